package auditstore_test

// How events merge into their request's row: state only moves forward.

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

func TestUpsertFollowsTheRequest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		evs := lifecycle(c)
		want := contract.Record{
			ID: c.ID, JobID: c.JobID, Method: c.Method, Username: c.Username,
			LocalPathOnStorage: c.LocalPathOnStorage, RelativePath: c.RelativePath,
			Status: contract.StatusQueued, Origin: "gateway", CreatedAt: at(0), UpdatedAt: at(0),
		}
		apply(t, s, evs[0])
		if diff := cmp.Diff(get(t, s, c.ID), want); diff != "" {
			t.Errorf("after queued (-got +want):\n%s", diff)
		}
		apply(t, s, evs[1])
		want.Status, want.StartedAt, want.UpdatedAt = contract.StatusRunning, ptr(at(1)), at(1)
		if diff := cmp.Diff(get(t, s, c.ID), want); diff != "" {
			t.Errorf("after started (-got +want):\n%s", diff)
		}
		st := apply(t, s, evs[2], evs[3])
		if diff := cmp.Diff(get(t, s, c.ID), succeededRecord(c)); diff != "" {
			t.Errorf("after succeeded (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(st, auditstore.Stats{Events: 2, Rows: 1}); diff != "" {
			t.Errorf("stats (-got +want):\n%s", diff)
		}
	})
}

func TestFailureIsRecorded(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-f")
		c.Origin = ""
		apply(t, s, event(c, contract.EventQueued, 1, at(0)), event(c, contract.EventStarted, 2, at(1)),
			event(c, contract.EventFailed, 3, at(2)))
		want := contract.Record{
			ID: c.ID, JobID: c.JobID, Method: c.Method, Username: c.Username,
			LocalPathOnStorage: c.LocalPathOnStorage, RelativePath: c.RelativePath,
			Status: contract.StatusFailed, ErrorCode: contract.CodeSourceNotFound, ErrorReason: "no such file",
			CreatedAt: at(0), StartedAt: ptr(at(1)), FinishedAt: ptr(at(2)), UpdatedAt: at(2),
		}
		if diff := cmp.Diff(get(t, s, c.ID), want); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
}

// Events arrive in any order (redelivery after a nak, a worker racing the
// gateway); each order must give the record of the in-order request.
func TestStateOnlyMovesForward(t *testing.T) {
	c := cmd("req-1")
	q, st, pr, ok := lifecycle(c)[0], lifecycle(c)[1], lifecycle(c)[2], lifecycle(c)[3]
	// The command was published straight on NATS: no queued event, and
	// the first event the audit sees is started.
	direct := succeededRecord(c)
	direct.CreatedAt = at(1)
	tests := []struct {
		name    string
		batches [][]contract.Event
		want    contract.Record
	}{
		{"in order, one batch", [][]contract.Event{{q, st, pr, ok}}, succeededRecord(c)},
		{"succeeded then started", [][]contract.Event{{q}, {ok}, {st}}, succeededRecord(c)},
		{"succeeded then started, one batch", [][]contract.Event{{ok, st, q}}, succeededRecord(c)},
		{"progress after succeeded", [][]contract.Event{{q, st, ok}, {pr}}, succeededRecord(c)},
		{"reverse, one by one", [][]contract.Event{{ok}, {pr}, {st}, {q}}, succeededRecord(c)},
		{"queued last", [][]contract.Event{{st, pr, ok}, {q}}, succeededRecord(c)},
		{"no queued event", [][]contract.Event{{st}, {ok}}, direct},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
				for _, b := range tt.batches {
					apply(t, s, b...)
				}
				if diff := cmp.Diff(get(t, s, c.ID), tt.want); diff != "" {
					t.Errorf("(-got +want):\n%s", diff)
				}
			})
		})
	}
}

// A batch does not read the rows of the requests whose queued event it
// holds: they are new as a rule. One that is not (its queued event came
// after the others) makes the batch go again reading every row; the new
// requests beside it are stored once, all the same.
func TestLateQueuedEventAmongNewRequests(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		late, fresh := cmd("req-1"), cmd("req-2")
		evs := lifecycle(late)
		apply(t, s, evs[1], evs[3])
		batch := append([]contract.Event{evs[0]}, lifecycle(fresh)...)
		st := apply(t, s, batch...)
		if diff := cmp.Diff(st, auditstore.Stats{Events: 5, Rows: 2}); diff != "" {
			t.Errorf("stats (-got +want):\n%s", diff)
		}
		for _, c := range []contract.Command{late, fresh} {
			if diff := cmp.Diff(get(t, s, c.ID), succeededRecord(c)); diff != "" {
				t.Errorf("%s (-got +want):\n%s", c.ID, diff)
			}
		}
	})
}

func TestFirstTerminalEventStands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		evs := lifecycle(c)
		late := event(c, contract.EventFailed, 9, at(9))
		apply(t, s, evs...)
		apply(t, s, late)
		want := succeededRecord(c)
		want.UpdatedAt = at(9)
		if diff := cmp.Diff(get(t, s, c.ID), want); diff != "" {
			t.Errorf("(-got +want):\n%s", diff)
		}
	})
}

// The recorder stages a batch while the one before it commits, and the two
// may hold events of the same requests (a backlog splits a request's
// events at every batch boundary). The second merges after the first;
// when the first is rolled back instead and comes again later, the rows
// end the same. (The recorder relies on it: a batch staged behind one that
// failed commits first.)
func TestBatchStagedWhileTheOneBeforeCommits(t *testing.T) {
	for _, firstFails := range []bool{false, true} {
		t.Run(fmt.Sprintf("first fails=%v", firstFails), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
				var first, second []contract.Event
				var want []contract.Record
				for i := range 50 {
					c := cmd(fmt.Sprintf("req-%02d", i))
					evs := lifecycle(c)
					first, second = append(first, evs[:2]...), append(second, evs[2:]...)
					want = append(want, succeededRecord(c))
				}
				a, err := s.Stage(t.Context(), auditstore.Batch{Events: first})
				if err != nil {
					t.Fatalf("Stage(first): %v", err)
				}
				type staged struct {
					b   *auditstore.Staged
					err error
				}
				next := make(chan staged, 1)
				go func() {
					b, err := s.Stage(t.Context(), auditstore.Batch{Events: second})
					next <- staged{b, err}
				}()
				if firstFails {
					a.Rollback(t.Context())
				} else if _, err := a.Commit(t.Context()); err != nil {
					t.Fatalf("Commit(first): %v", err)
				}
				b := <-next
				if b.err != nil {
					t.Fatalf("Stage(second): %v", b.err)
				}
				st, err := b.b.Commit(t.Context())
				if err != nil {
					t.Fatalf("Commit(second): %v", err)
				}
				if st.Events != len(second) {
					t.Errorf("second batch stored %d events, want %d", st.Events, len(second))
				}
				if firstFails {
					if st := apply(t, s, first...); st.Events != len(first) {
						t.Errorf("first batch, again: stored %d events, want %d", st.Events, len(first))
					}
				}
				for _, w := range want {
					if diff := cmp.Diff(get(t, s, w.ID), w); diff != "" {
						t.Errorf("%s (-got +want):\n%s", w.ID, diff)
					}
				}
			})
		})
	}
}
