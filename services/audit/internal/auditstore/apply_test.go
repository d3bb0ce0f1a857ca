package auditstore_test

// Apply: batches, duplicates, replays, and what the tables can hold.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

func TestDuplicateEventChangesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		q := event(c, contract.EventQueued, 1, at(0))
		apply(t, s, q)
		// The same event id with other content (a buggy or hostile
		// publisher) is the same event: the first copy stands.
		dup := q
		dup.Type, dup.Time, dup.Outcome = contract.EventSucceeded, at(5), contract.OutcomeStaged
		st := apply(t, s, dup, dup)
		if diff := cmp.Diff(st, auditstore.Stats{Duplicates: 2}); diff != "" {
			t.Errorf("stats (-got +want):\n%s", diff)
		}
		want := contract.Record{
			ID: c.ID, JobID: c.JobID, Method: c.Method, Username: c.Username,
			LocalPathOnStorage: c.LocalPathOnStorage, RelativePath: c.RelativePath,
			Status: contract.StatusQueued, Origin: "gateway", CreatedAt: at(0), UpdatedAt: at(0),
		}
		got, events, err := s.Get(t.Context(), c.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("record (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(events, []contract.Event{q}); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
	})
}

func TestDuplicateInOneBatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		evs := lifecycle(c)
		st := apply(t, s, evs[0], evs[0], evs[1], evs[2], evs[3], evs[3])
		if diff := cmp.Diff(st, auditstore.Stats{Events: 4, Duplicates: 2, Rows: 1}); diff != "" {
			t.Errorf("stats (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(get(t, s, c.ID), succeededRecord(c)); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
}

// dump is everything the store holds about the requests it lists.
type dump struct {
	Records   []contract.Record
	Events    map[string][]contract.Event
	Downloads map[string][]contract.DownloadEvent
}

func dumpStore(t *testing.T, s *auditstore.Store) dump {
	t.Helper()
	d := dump{Events: map[string][]contract.Event{}, Downloads: map[string][]contract.DownloadEvent{}}
	cursor := ""
	for {
		recs, next, err := s.List(t.Context(), contract.AuditListRequest{Limit: auditstore.MaxLimit, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		d.Records = append(d.Records, recs...)
		for _, r := range recs {
			_, evs, err := s.Get(t.Context(), r.ID, true)
			if err != nil {
				t.Fatal(err)
			}
			d.Events[r.ID] = evs
			if d.Downloads[r.ID], err = s.Downloads(t.Context(), r.ID); err != nil {
				t.Fatal(err)
			}
		}
		if next == "" {
			return d
		}
		cursor = next
	}
}

func TestReplayedBatchChangesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		var batch []contract.Event
		for i := range 30 {
			c := cmd(fmt.Sprintf("req-%02d", i))
			evs := lifecycle(c)
			batch = append(batch, evs[:1+i%4]...)
		}
		first := apply(t, s, batch...)
		before := dumpStore(t, s)
		again := apply(t, s, batch...)
		after := dumpStore(t, s)
		if diff := cmp.Diff(after, before); diff != "" {
			t.Errorf("replay changed the store (-after +before):\n%s", diff)
		}
		if diff := cmp.Diff(again, auditstore.Stats{Duplicates: first.Events}); diff != "" {
			t.Errorf("replay stats (-got +want):\n%s", diff)
		}
		if got, want := len(before.Records), 30; got != want {
			t.Errorf("records = %d, want %d", got, want)
		}
	})
}

// TestBatchesOfEverySize applies, side by side, batches of more distinct
// sizes (each three statement shapes) than the store keeps statements
// for, so that statements are dropped while other batches may still use
// them.
func TestBatchesOfEverySize(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		const sizes = 40
		errs := make(chan error, sizes)
		for n := 1; n <= sizes; n++ {
			go func() {
				var batch []contract.Event
				for i := range n {
					batch = append(batch, lifecycle(cmd(fmt.Sprintf("req-%03d-%03d", n, i)))[0])
				}
				_, err := s.Apply(t.Context(), auditstore.Batch{Events: batch})
				errs <- err
			}()
		}
		for range sizes {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if got, want := len(dumpStore(t, s).Records), sizes*(sizes+1)/2; got != want {
			t.Errorf("records = %d, want %d", got, want)
		}
	})
}

func TestApplyRejectsUnstorableEvents(t *testing.T) {
	good := event(cmd("req-1"), contract.EventQueued, 1, at(0))
	tests := []struct {
		name   string
		change func(*contract.Event)
	}{
		{"no id", func(e *contract.Event) { e.ID = "" }},
		{"long id", func(e *contract.Event) { e.ID = strings.Repeat("e", 129) }},
		{"no request id", func(e *contract.Event) { e.RequestID = "" }},
		{"bad request id", func(e *contract.Event) { e.RequestID = "a.b" }},
		{"no time", func(e *contract.Event) { e.Time = time.Time{} }},
		{"before 1970", func(e *contract.Event) { e.Time = time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC) }},
		{"year 999", func(e *contract.Event) { e.Time = time.Date(999, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year 10000", func(e *contract.Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year 10000 in UTC only", func(e *contract.Event) {
			e.Time = time.Date(9999, 12, 31, 23, 0, 0, 0, time.FixedZone("UTC-5", -5*3600))
		}},
		{"expires in year 10000", func(e *contract.Event) {
			e.ExpiresAt = ptr(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC))
		}},
	}
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				bad := good
				tt.change(&bad)
				if err := auditstore.ValidateEvent(bad); !errors.Is(err, auditstore.ErrInvalidEvent) {
					t.Errorf("ValidateEvent = %v, want ErrInvalidEvent", err)
				}
				_, err := s.Apply(t.Context(), auditstore.Batch{Events: []contract.Event{good, bad}})
				if !errors.Is(err, auditstore.ErrInvalidEvent) {
					t.Errorf("Apply = %v, want ErrInvalidEvent", err)
				}
			})
		}
		if _, _, err := s.Get(t.Context(), good.RequestID, false); !errors.Is(err, auditstore.ErrNotFound) {
			t.Errorf("a rejected batch stored something: Get = %v", err)
		}
	})
}

// Oversized fields from a careless publisher are cut to fit, never a
// batch that fails forever; strange text survives intact.
func TestOddFieldsAreStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		c.Username = strings.Repeat("ü", 100)
		c.RelativePath = "données/🔭 ' \" ; -- \\ %_.fits"
		ev := event(c, contract.EventRejected, 1, at(0))
		ev.Error = contract.Errorf(contract.CodeInvalidUsername, "%s", strings.Repeat("x", 20000))
		ev.Type = contract.EventRejected
		apply(t, s, ev)
		got := get(t, s, c.ID)
		if got.Username != strings.Repeat("ü", 64) {
			t.Errorf("username = %q, want it cut to 64 characters", got.Username)
		}
		if got.RelativePath != c.RelativePath {
			t.Errorf("relative_path = %q, want %q", got.RelativePath, c.RelativePath)
		}
		if len(got.ErrorReason) != 8192 || got.Status != contract.StatusRejected {
			t.Errorf("error_reason of %d bytes, status %s; want 8192 bytes, rejected", len(got.ErrorReason), got.Status)
		}
	})
}

// Unknown event types (a newer publisher) are kept in the history without
// touching the status.
func TestUnknownEventType(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		ev := event(c, "paused", 1, at(0))
		apply(t, s, ev)
		rec, evs, err := s.Get(t.Context(), c.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Status != "" || len(evs) != 1 {
			t.Errorf("status %q with %d events; want no status and the event kept", rec.Status, len(evs))
		}
	})
}

// The longest event id the contract allows, 128 characters of any kind,
// is stored: a batch holding it must not fail for ever.
func TestLongestEventIDIsStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		ev := event(cmd("req-1"), contract.EventQueued, 1, at(0))
		ev.ID = strings.Repeat("é", 128)
		if err := ev.Validate(); err != nil {
			t.Fatalf("the contract refuses the id: %v", err)
		}
		apply(t, s, ev)
		if _, events, err := s.Get(t.Context(), "req-1", true); err != nil || len(events) != 1 || events[0].ID != ev.ID {
			t.Errorf("events = %+v, %v; want the event with its id", events, err)
		}
	})
}

// TestValidateEventTimeBounds checks that the ends of the storable range
// themselves are accepted.
func TestValidateEventTimeBounds(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
	} {
		ev := event(cmd("req-1"), contract.EventQueued, 1, at)
		if err := auditstore.ValidateEvent(ev); err != nil {
			t.Errorf("ValidateEvent(time %s) = %v, want nil", at, err)
		}
		dl := download(cmd("req-1"), contract.DownloadStarted, 1, at, 0)
		if err := auditstore.ValidateDownload(dl); err != nil {
			t.Errorf("ValidateDownload(time %s) = %v, want nil", at, err)
		}
	}
}

// A message given as received is what the events table keeps, not the
// event encoded again: the history reads it back.
func TestReceivedMessageIsStored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		ev := event(cmd("req-1"), contract.EventQueued, 1, at(0))
		received := ev
		received.Message = "as received"
		data, err := json.Marshal(received)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Apply(t.Context(), auditstore.Batch{Events: []contract.Event{ev}, Received: map[string][]byte{ev.ID: data}}); err != nil {
			t.Fatal(err)
		}
		_, events, err := s.Get(t.Context(), "req-1", true)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) != 1 || events[0].Message != "as received" {
			t.Errorf("events = %+v, want the message as received", events)
		}
	})
}
