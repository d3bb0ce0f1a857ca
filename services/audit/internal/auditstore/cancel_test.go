package auditstore_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// A cancelled request is recorded as cancelled, with who cancelled it in
// the record and in its history; a started event arriving late does not
// move it back, and the list finds it by its status.
func TestCancelledIsRecorded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-c")
		cancelled := contract.Cancelled(event(c, contract.EventStarted, 0, at(0)), contract.CancelRequest{CancelledBy: "bob"})
		cancelled.ID, cancelled.Time, cancelled.Source = "req-c-ev-3", at(2), "test"
		if err := cancelled.Validate(); err != nil {
			t.Fatalf("the cancelled event is invalid: %v", err)
		}
		evs := []contract.Event{event(c, contract.EventQueued, 1, at(0)), cancelled, event(c, contract.EventStarted, 2, at(1))}
		apply(t, s, evs[0], evs[1])
		apply(t, s, evs[2])
		want := contract.Record{
			ID: c.ID, JobID: c.JobID, Method: c.Method, Username: c.Username,
			LocalPathOnStorage: c.LocalPathOnStorage, RelativePath: c.RelativePath,
			Status: contract.StatusCancelled, ErrorCode: contract.CodeCancelled, ErrorReason: "cancelled by bob",
			Origin: "gateway", CreatedAt: at(0), StartedAt: ptr(at(1)), FinishedAt: ptr(at(2)), UpdatedAt: at(2),
		}
		rec, history, err := s.Get(t.Context(), c.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(rec, want); diff != "" {
			t.Errorf("record (-got +want):\n%s", diff)
		}
		if len(history) != 3 || history[2].Type != contract.EventCancelled || history[2].CancelledBy != "bob" {
			t.Errorf("history %+v, want the cancelled event last, by bob", history)
		}
		list, _, err := s.List(t.Context(), contract.AuditListRequest{Status: contract.StatusCancelled})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].ID != c.ID {
			t.Errorf("list by status cancelled = %+v, want %s", list, c.ID)
		}
	})
}
