package auditstore_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// An expired request is recorded as expired and keeps the results and
// the end of its staging, whichever of succeeded and expired is applied
// first; its history holds when it was due, and the list finds it by its
// status.
func TestExpiredIsRecorded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		for _, order := range []string{"in order", "expired first"} {
			c := cmd("req-" + order[:2])
			started, succeeded := event(c, contract.EventStarted, 1, at(1)), event(c, contract.EventSucceeded, 2, at(2))
			succeeded.ExpiresAt = ptr(at(60))
			expired := contract.Expired(succeeded, at(60))
			expired.ID, expired.Time, expired.Source, expired.Message = c.ID+"-ev-3", at(61), "test", "removed"
			if err := expired.Validate(); err != nil {
				t.Fatalf("the expired event is invalid: %v", err)
			}
			if order == "in order" {
				apply(t, s, event(c, contract.EventQueued, 0, at(0)), started, succeeded)
				apply(t, s, expired)
			} else {
				apply(t, s, event(c, contract.EventQueued, 0, at(0)), started, expired)
				apply(t, s, succeeded)
			}
			want := contract.Record{
				ID: c.ID, JobID: c.JobID, Method: c.Method, Username: c.Username,
				LocalPathOnStorage: c.LocalPathOnStorage, RelativePath: c.RelativePath,
				Status: contract.StatusExpired, Outcome: contract.OutcomeStaged, Bytes: 2048, Files: 1, Adler32: "0a0b0c0d",
				Origin: "gateway", CreatedAt: at(0), StartedAt: ptr(at(1)), FinishedAt: ptr(at(2)), ExpiresAt: ptr(at(60)), UpdatedAt: at(61),
			}
			rec, history, err := s.Get(t.Context(), c.ID, true)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rec, want); diff != "" {
				t.Errorf("%s: record (-got +want):\n%s", order, diff)
			}
			last := history[len(history)-1]
			if last.Type != contract.EventExpired || last.ExpiresAt == nil || !last.ExpiresAt.Equal(at(60)) {
				t.Errorf("%s: last of the history %s, expires_at %v; want expired, due %s", order, last.Type, last.ExpiresAt, at(60))
			}
		}
		list, _, err := s.List(t.Context(), contract.AuditListRequest{Status: contract.StatusExpired})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 {
			t.Errorf("list by status expired = %+v, want both requests", list)
		}
	})
}
