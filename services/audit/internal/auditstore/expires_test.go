package auditstore_test

// When a request's staged item goes: expires_at in its record.

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// lifetimeEvents is the events of a request staged with a lifetime: queued,
// started, succeeded with expires_at at(60), and expired when it was due
// at last, at(90) (the item was staged again meanwhile, with a longer
// lifetime).
func lifetimeEvents(c contract.Command) []contract.Event {
	succeeded := event(c, contract.EventSucceeded, 3, at(2))
	succeeded.ExpiresAt = ptr(at(60))
	expired := contract.Expired(succeeded, at(90))
	expired.ID, expired.Time, expired.Source, expired.Message = c.ID+"-ev-4", at(91), "test", "removed"
	return []contract.Event{event(c, contract.EventQueued, 1, at(0)), event(c, contract.EventStarted, 2, at(1)), succeeded, expired}
}

// permutations returns every order of evs.
func permutations(evs []contract.Event) [][]contract.Event {
	if len(evs) <= 1 {
		return [][]contract.Event{evs}
	}
	var out [][]contract.Event
	for i := range evs {
		rest := append(append([]contract.Event{}, evs[:i]...), evs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]contract.Event{evs[i]}, p...))
		}
	}
	return out
}

// A succeeded event's expires_at is in the record, returned by Get and
// List, in UTC to the microsecond; an expired event's due time replaces
// it, whichever of the two is applied first: every order of the events,
// one batch each or all in one, gives the same record.
func TestExpiresAtIsRecorded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-lifetime")
		evs := lifetimeEvents(c)
		// Published with an offset and nanoseconds.
		evs[2].ExpiresAt = ptr(time.Date(2026, 3, 1, 14, 1, 0, 123456789, time.FixedZone("CEST", 2*3600)))
		apply(t, s, evs[:3]...)
		want := succeededRecord(c)
		want.FinishedAt, want.UpdatedAt = ptr(at(2)), at(2)
		want.ExpiresAt = ptr(time.Date(2026, 3, 1, 12, 1, 0, 123456000, time.UTC))
		got := get(t, s, c.ID)
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("after succeeded (-got +want):\n%s", diff)
		}
		if got.ExpiresAt == nil || got.ExpiresAt.Location() != time.UTC {
			t.Errorf("expires_at %v, want it in UTC", got.ExpiresAt)
		}
		list, _, err := s.List(t.Context(), contract.AuditListRequest{Username: c.Username})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(list, []contract.Record{want}); diff != "" {
			t.Errorf("list (-got +want):\n%s", diff)
		}

		want = succeededRecord(c)
		want.Status, want.FinishedAt, want.ExpiresAt, want.UpdatedAt = contract.StatusExpired, ptr(at(2)), ptr(at(90)), at(91)
		for i, order := range permutations(lifetimeEvents(c)) {
			for _, oneBatch := range []bool{false, true} {
				id := fmt.Sprintf("req-%d-%t", i, oneBatch)
				var names []string
				for j := range order {
					order[j].RequestID, order[j].ID = id, id+"-"+string(order[j].Type)
					names = append(names, string(order[j].Type))
				}
				if oneBatch {
					apply(t, s, order...)
				} else {
					for _, ev := range order {
						apply(t, s, ev)
					}
				}
				want.ID = id
				if diff := cmp.Diff(get(t, s, id), want); diff != "" {
					t.Errorf("%v (one batch: %t): record (-got +want):\n%s", names, oneBatch, diff)
				}
			}
		}
	})
}

// Requests recorded before the records had an expires_at column take it
// from the event that set their status when the column is added, as the
// audit would have: whatever the zone and precision the events were
// published with.
func TestExpiresAtColumnFilledFromEvents(t *testing.T) {
	kept, expired, forever, failed := cmd("req-kept"), cmd("req-expired"), cmd("req-forever"), cmd("req-failed")
	var want []contract.Record
	reopenBefore(t, map[string]int64{"sqlite": 7, "mysql": 8}, func(t *testing.T, s *auditstore.Store) {
		evs := lifetimeEvents(kept)[:3]
		evs[2].ExpiresAt = ptr(time.Date(2026, 3, 1, 14, 1, 0, 123456789, time.FixedZone("CEST", 2*3600)))
		apply(t, s, evs...)
		evs = lifetimeEvents(expired)
		evs[3].ExpiresAt = ptr(time.Date(2026, 3, 1, 7, 1, 30, 500000000, time.FixedZone("EST", -5*3600)))
		apply(t, s, evs...)
		apply(t, s, lifecycle(forever)...)
		apply(t, s, event(failed, contract.EventQueued, 1, at(0)), event(failed, contract.EventFailed, 2, at(1)))
		want = nil
		for _, id := range []string{kept.ID, expired.ID, forever.ID, failed.ID} {
			want = append(want, get(t, s, id))
		}
		if want[0].ExpiresAt == nil || want[1].ExpiresAt == nil || !want[1].ExpiresAt.Equal(time.Date(2026, 3, 1, 12, 1, 30, 500000000, time.UTC)) {
			t.Fatalf("records before the migration: %+v", want)
		}
	}, func(t *testing.T, s *auditstore.Store) {
		var got []contract.Record
		for _, id := range []string{kept.ID, expired.ID, forever.ID, failed.ID} {
			got = append(got, get(t, s, id))
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("records after the migration (-got +want):\n%s", diff)
		}
	})
}
