package audit_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/audit"
)

// A command that waits in STAGING_REQUESTS longer than its max age, no
// worker taking it, is removed by the server without a word; the audit
// records its request as failed (queue_expired) with an event on the
// request's subject, which is then its state everywhere. A request a worker
// starts at the moment the audit looks, and one younger than the max age,
// are left alone.
func TestAgedOutCommandEndsFailed(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			cfg := b.cfg(t)
			cfg.QueueSweepInterval = 50 * time.Millisecond
			e := newEnv(t)
			aged, raced, young := command("req-aged"), command("req-raced"), command("req-young")
			// A worker starts req-raced between the audit's read of its
			// last event and its publish.
			restore := audit.SetBeforeExpire(func(id string) {
				if id != raced.ID {
					return
				}
				ev := contract.EventFor(raced, contract.EventStarted)
				ev.ID, ev.Time, ev.Source, ev.Attempt = "req-raced-started", time.Now().UTC(), "stager", 1
				if err := bus.PublishEvent(t.Context(), e.js, ev); err != nil {
					t.Errorf("publish started: %v", err)
				}
			})
			t.Cleanup(restore) // after the audit stops: cleanups run last first
			a := e.start(t, cfg)
			// After the start, which sets the streams up as configured.
			const maxAge = 2 * time.Second
			shortRequestsMaxAge(t, e.js, maxAge)

			long := time.Now().Add(-time.Hour).UTC()
			for _, c := range []contract.Command{young, aged, raced} {
				if err := bus.PublishCommand(t.Context(), e.js, c); err != nil {
					t.Fatal(err)
				}
			}
			publish(t, e.js, queuedAt(young, time.Now().UTC()), queuedAt(aged, long), queuedAt(raced, long))
			// No worker of the method runs: the server drops the commands.
			testenv.Eventually(t, 15*time.Second, "the commands to age out of the queue", func() bool {
				return requestsHeld(t, e.js) == 0
			})
			testenv.Eventually(t, 15*time.Second, "the aged request failed and the raced one running in the audit", func() bool {
				return auditRecord(t, e, aged.ID).Status == contract.StatusFailed && auditRecord(t, e, raced.ID).Status == contract.StatusRunning
			})
			rec := auditRecord(t, e, aged.ID)
			if rec.ErrorCode != contract.CodeQueueExpired || !strings.Contains(rec.ErrorReason, "("+maxAge.String()+")") || rec.FinishedAt == nil {
				t.Errorf("aged request's record = %+v, want failed with queue_expired naming the max age %s", rec, maxAge)
			}
			last := lastEvent(t, e.js, aged.ID)
			if last.Type != contract.EventFailed || last.Source != "audit" || last.Error == nil ||
				last.Error.Code != contract.CodeQueueExpired || !contract.SameRequest(aged, last) {
				t.Errorf("aged request's last event = %+v, want the audit's failed event with queue_expired, repeating the request", last)
			}
			if last := lastEvent(t, e.js, raced.ID); last.Type != contract.EventStarted {
				t.Errorf("raced request's last event = %s, want the worker's started", last.Type)
			}
			if got := auditRecord(t, e, young.ID); got.Status != contract.StatusQueued {
				t.Errorf("young request's record = %+v, want still queued", got)
			}
			if last := lastEvent(t, e.js, young.ID); last.Type != contract.EventQueued {
				t.Errorf("young request's last event = %s, want queued", last.Type)
			}
			if got := metric(t, a.reg, "staging_audit_queue_expired_total"); got != 1 {
				t.Errorf("staging_audit_queue_expired_total = %v, want 1", got)
			}
		})
	}
}

// shortRequestsMaxAge makes STAGING_REQUESTS keep commands for maxAge,
// shorter than the services allow (the deduplication window, which the
// max age must cover, shrinks with it).
func shortRequestsMaxAge(t *testing.T, js jetstream.JetStream, maxAge time.Duration) {
	t.Helper()
	s, err := js.Stream(t.Context(), contract.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxAge, cfg.Duplicates = maxAge, maxAge/2
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
}

func requestsHeld(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(t.Context(), contract.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

func queuedAt(c contract.Command, when time.Time) contract.Event {
	ev := contract.EventFor(c, contract.EventQueued)
	ev.ID, ev.Time, ev.Source, ev.Message = c.ID+"-queued", when, "gateway", "accepted and queued"
	return ev
}

func auditRecord(t *testing.T, e env, id string) contract.Record {
	t.Helper()
	rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: id})
	if rep.Record == nil {
		return contract.Record{}
	}
	return *rep.Record
}

func lastEvent(t *testing.T, js jetstream.JetStream, id string) contract.Event {
	t.Helper()
	s, err := js.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(t.Context(), contract.EventSubject(id))
	if err != nil {
		t.Fatalf("last event of %s: %v", id, err)
	}
	var ev contract.Event
	if err := json.Unmarshal(raw.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

// A request whose events have left STAGING_EVENTS (kept less long than
// the queue keeps commands) is failed from the queued event the audit
// stored, on condition that its subject is still empty.
func TestAgedOutCommandWithoutEventsOnTheStream(t *testing.T) {
	cfg := sqliteConfig(t)
	cfg.QueueSweepInterval = 50 * time.Millisecond
	e := newEnv(t)
	e.start(t, cfg)
	c := command("req-gone")
	publish(t, e.js, queuedAt(c, time.Now().Add(-time.Hour).UTC()))
	testenv.Eventually(t, 15*time.Second, "the request to be recorded as queued", func() bool {
		return auditRecord(t, e, c.ID).Status == contract.StatusQueued
	})
	events, err := e.js.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := events.GetLastMsgForSubject(t.Context(), contract.EventSubject(c.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := events.DeleteMsg(t.Context(), raw.Sequence); err != nil {
		t.Fatal(err)
	}
	// Only now is the request older than the queue's max age.
	shortRequestsMaxAge(t, e.js, 2*time.Second)
	testenv.Eventually(t, 15*time.Second, "the request to be recorded as failed", func() bool {
		return auditRecord(t, e, c.ID).Status == contract.StatusFailed
	})
	if rec := auditRecord(t, e, c.ID); rec.ErrorCode != contract.CodeQueueExpired || rec.Origin != c.Origin || rec.Username != c.Username {
		t.Errorf("record = %+v, want failed with queue_expired, the request's fields kept", rec)
	}
	if last := lastEvent(t, e.js, c.ID); last.Type != contract.EventFailed || !contract.SameRequest(c, last) {
		t.Errorf("last event = %+v, want the audit's failed event repeating the request", last)
	}
}
