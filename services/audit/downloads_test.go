package audit_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// The audit consumes staging.downloads.> beside staging.events.>: each
// download event is stored once, in the request's downloads, and leaves
// its status alone; a replay changes nothing. An audit consumer created by
// an older version, filtered on the events only, loses its filter.
func TestDownloadEventsAreRecorded(t *testing.T) {
	e := newEnv(t)
	// The durable as an older audit left it.
	if _, err := bus.EnsureConsumer(t.Context(), e.js, bus.ConsumerOptions{
		Stream: contract.StreamEvents, Durable: contract.ConsumerAudit,
		FilterSubjects: []string{contract.SubjectEventsAll}, AckWait: 10 * time.Second, MaxDeliver: -1,
	}); err != nil {
		t.Fatal(err)
	}
	cfg := sqliteConfig(t)
	a := e.start(t, cfg)
	cons, err := e.js.Consumer(t.Context(), contract.StreamEvents, contract.ConsumerAudit)
	if err != nil {
		t.Fatal(err)
	}
	if c := cons.CachedInfo().Config; c.FilterSubject != "" || len(c.FilterSubjects) != 0 {
		t.Errorf("audit consumer filters = %q %v, want none: it takes the whole stream", c.FilterSubject, c.FilterSubjects)
	}

	c := command("req-dl")
	c.Method = contract.MethodDirectDownload
	evs := lifecycle(c, 1, false)
	evs[2].Outcome, evs[2].DownloadURL = contract.OutcomeLinkIssued, "/api/v1/downloads/x"
	publish(t, e.js, evs...)
	var downloads []contract.DownloadEvent
	for i, typ := range []contract.DownloadEventType{contract.DownloadStarted, contract.DownloadCompleted, contract.DownloadStarted, contract.DownloadCompleted} {
		dl := contract.DownloadEvent{
			SpecVersion: contract.SpecVersion, ID: fmt.Sprintf("dl-%d", i), Type: typ, Time: t0.Add(time.Minute + time.Duration(i)*time.Second),
			Source: "stager", RequestID: c.ID, DownloadID: fmt.Sprintf("d-%d", i/2), Username: c.Username, LocalPathOnStorage: c.LocalPathOnStorage,
		}
		if typ == contract.DownloadCompleted {
			dl.Bytes = 42
		}
		downloads = append(downloads, dl)
		// Published twice: the stream's duplicate window drops one, and
		// the audit would keep one anyway.
		for range 2 {
			if err := bus.PublishDownload(t.Context(), e.js, dl); err != nil {
				t.Fatal(err)
			}
		}
	}
	total := float64(len(evs) + len(downloads))
	testenv.Eventually(t, 15*time.Second, "every event and download to be stored", func() bool {
		return metric(t, a.reg, "staging_audit_events_total", "result", "stored") == total
	})
	rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: c.ID, WithEvents: true})
	if rep.Record == nil {
		t.Fatalf("get: %+v", rep.Error)
	}
	if rep.Record.Status != contract.StatusSucceeded || rep.Record.Downloads != 2 || rep.Record.Outcome != contract.OutcomeLinkIssued {
		t.Errorf("record = %+v, want succeeded, link_issued, 2 downloads", rep.Record)
	}
	if diff := cmp.Diff(rep.Events, evs); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(rep.Downloads, downloads); diff != "" {
		t.Errorf("downloads (-got +want):\n%s", diff)
	}
	if without := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: c.ID}); without.Downloads != nil || without.Events != nil {
		t.Errorf("get without with_events = %+v, want the record only", without)
	}

	replayUnchanged(t, e, a, cfg, int(total))
}
