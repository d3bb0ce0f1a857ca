package auditstore_test

// Requests by DID: the DID in the record, the resolution in the events.

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// didCmd is a request by DID.
func didCmd(id string) contract.Command {
	c := cmd(id)
	c.LocalPathOnStorage, c.DID = "", "testsrc:ds1"
	return c
}

// didLifecycle is the events of a successful request by DID whose
// resolution came in two parts, published at the same instant.
func didLifecycle(c contract.Command) []contract.Event {
	evs := lifecycle(c)
	resolved := make([]contract.Event, 2)
	for i := range resolved {
		resolved[i] = event(c, contract.EventResolved, 10+i, at(1).Add(500_000_000))
		resolved[i].Resolved = &contract.Resolved{Files: 3, Bytes: 2048, Part: i + 1, Parts: 2,
			Paths: []string{"testsrc/a1/b2/file1", "testsrc/c3/d4/dir/x"}[:2-i]}
	}
	// Ids that sort the other way: the parts are kept in their order.
	resolved[0].ID, resolved[1].ID = "z-part-1", "a-part-2"
	return append(evs[:2:2], append(resolved, evs[2:]...)...)
}

func didRecord(c contract.Command) contract.Record {
	r := succeededRecord(c)
	r.DID = c.DID
	return r
}

// The record of a request by DID keeps the DID, returned by Get and List;
// its resolved events are kept in its history, in order, and do not move
// its status past running.
func TestDIDRequestIsRecorded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := didCmd("req-did")
		evs := didLifecycle(c)
		apply(t, s, evs[0], evs[1], evs[3])
		if r := get(t, s, c.ID); r.Status != contract.StatusRunning || r.DID != c.DID || r.LocalPathOnStorage != "" {
			t.Errorf("after a resolved event: status %s, did %q, local_path_on_storage %q; want running, %q, none", r.Status, r.DID, r.LocalPathOnStorage, c.DID)
		}
		apply(t, s, evs[5], evs[2], evs[4])
		rec, got, err := s.Get(t.Context(), c.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, evs); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(rec, didRecord(c)); diff != "" {
			t.Errorf("record (-got +want):\n%s", diff)
		}
		list, _, err := s.List(t.Context(), contract.AuditListRequest{Username: c.Username})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(list, []contract.Record{didRecord(c)}); diff != "" {
			t.Errorf("list (-got +want):\n%s", diff)
		}
	})
}

// A request recorded before the records had a did column takes its DID
// from its events when the column is added.
func TestDIDColumnFilledFromEvents(t *testing.T) {
	byDID, byPath := didCmd("req-did"), cmd("req-path")
	reopenBefore(t, map[string]int64{"sqlite": 6, "mysql": 7}, func(t *testing.T, s *auditstore.Store) {
		apply(t, s, didLifecycle(byDID)...)
		apply(t, s, lifecycle(byPath)...)
	}, func(t *testing.T, s *auditstore.Store) {
		if diff := cmp.Diff([]contract.Record{get(t, s, byDID.ID), get(t, s, byPath.ID)}, []contract.Record{didRecord(byDID), succeededRecord(byPath)}); diff != "" {
			t.Errorf("records after the migration (-got +want):\n%s", diff)
		}
	})
}
