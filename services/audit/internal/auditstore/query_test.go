package auditstore_test

// The queries: one request, and lists with filters and cursors.

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

func TestGetWithEvents(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		c := cmd("req-1")
		evs := lifecycle(c)
		// Nanoseconds survive in the history even though the row keeps
		// microseconds.
		evs[2].Time = evs[2].Time.Add(789 * time.Nanosecond)
		apply(t, s, evs[3], evs[1])
		apply(t, s, evs[2], evs[0])
		apply(t, s, event(cmd("req-other"), contract.EventQueued, 1, at(0)))
		rec, got, err := s.Get(t.Context(), c.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, evs); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(rec, succeededRecord(c)); diff != "" {
			t.Errorf("record (-got +want):\n%s", diff)
		}
		_, none, err := s.Get(t.Context(), c.ID, false)
		if err != nil || none != nil {
			t.Errorf("Get without events = %v, %v; want no events", none, err)
		}
	})
}

func TestGetUnknown(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		_, _, err := s.Get(t.Context(), "nope", true)
		if !errors.Is(err, auditstore.ErrNotFound) {
			t.Errorf("Get(nope) = %v, want ErrNotFound", err)
		}
	})
}

// Ids differing only in case are different requests (MySQL's default
// collations would fold them).
func TestIDsAreCaseSensitive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		apply(t, s, event(cmd("abc"), contract.EventQueued, 1, at(0)), event(cmd("ABC"), contract.EventQueued, 1, at(1)))
		recs, _, err := s.List(t.Context(), contract.AuditListRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(recs), 2; got != want {
			t.Errorf("records = %d, want %d", got, want)
		}
	})
}

func TestListFiltersAndPages(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		// 120 requests; every fourth is bob's and failed, every third a
		// symlink, ids sorted like their creation times, except pairs
		// created at the same instant so the id breaks the tie.
		var batch []contract.Event
		for i := range 120 {
			c := cmd(fmt.Sprintf("req-%03d", i))
			c.Username, c.Method, c.JobID = "alice", contract.MethodLocalCopy, ""
			if i%4 == 0 {
				c.Username = "bob"
			}
			if i%3 == 0 {
				c.Method = contract.MethodLocalSymlink
			}
			if i < 10 {
				c.JobID = "job-a"
			}
			when := at(i / 2)
			last := contract.EventSucceeded
			if i%4 == 0 {
				last = contract.EventFailed
			}
			batch = append(batch, event(c, contract.EventQueued, 1, when), event(c, last, 2, when.Add(time.Minute)))
		}
		apply(t, s, batch...)

		ids := func(from, to int, keep func(i int) bool) []string {
			var out []string
			for i := to - 1; i >= from; i-- {
				if keep(i) {
					out = append(out, fmt.Sprintf("req-%03d", i))
				}
			}
			return out
		}
		all := func(int) bool { return true }
		tests := []struct {
			name string
			req  contract.AuditListRequest
			want []string
		}{
			{"everything", contract.AuditListRequest{Limit: 7}, ids(0, 120, all)},
			{"default page size", contract.AuditListRequest{}, ids(0, 120, all)},
			{"username", contract.AuditListRequest{Username: "bob", Limit: 9}, ids(0, 120, func(i int) bool { return i%4 == 0 })},
			{"status", contract.AuditListRequest{Status: contract.StatusSucceeded, Limit: 25}, ids(0, 120, func(i int) bool { return i%4 != 0 })},
			{"method", contract.AuditListRequest{Method: contract.MethodLocalSymlink}, ids(0, 120, func(i int) bool { return i%3 == 0 })},
			{"job", contract.AuditListRequest{JobID: "job-a", Limit: 3}, ids(0, 10, all)},
			{"since and until", contract.AuditListRequest{Since: at(10), Until: at(20), Limit: 4}, ids(20, 40, all)},
			{"all filters", contract.AuditListRequest{Username: "alice", Method: contract.MethodLocalSymlink, Status: contract.StatusSucceeded, Since: at(30)}, ids(60, 120, func(i int) bool { return i%4 != 0 && i%3 == 0 })},
			{"nothing matches", contract.AuditListRequest{Username: "carol"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var got []string
				req, pages := tt.req, 0
				limit := req.Limit
				if limit == 0 {
					limit = auditstore.DefaultLimit
				}
				for {
					recs, next, err := s.List(t.Context(), req)
					if err != nil {
						t.Fatal(err)
					}
					pages++
					if len(recs) > limit {
						t.Fatalf("page of %d records, limit %d", len(recs), limit)
					}
					for _, r := range recs {
						got = append(got, r.ID)
					}
					if next == "" {
						break
					}
					if pages > 200 {
						t.Fatal("paging does not end")
					}
					req.Cursor = next
				}
				if diff := cmp.Diff(got, tt.want); diff != "" {
					t.Errorf("ids (-got +want):\n%s", diff)
				}
				wantPages := max(1, (len(tt.want)+limit-1)/limit)
				if pages != wantPages && pages != wantPages+1 {
					t.Errorf("pages = %d, want %d", pages, wantPages)
				}
			})
		}
	})
}

func TestListLimits(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		var batch []contract.Event
		for i := range auditstore.MaxLimit + 5 {
			batch = append(batch, event(cmd(fmt.Sprintf("r%d", i)), contract.EventQueued, 1, at(i)))
		}
		apply(t, s, batch...)
		for _, tt := range []struct {
			limit, want int
		}{{0, auditstore.DefaultLimit}, {1, 1}, {auditstore.MaxLimit + 100, auditstore.MaxLimit}} {
			recs, next, err := s.List(t.Context(), contract.AuditListRequest{Limit: tt.limit})
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tt.want || next == "" {
				t.Errorf("List(limit %d) = %d records, next %q; want %d and a next cursor", tt.limit, len(recs), next, tt.want)
			}
		}
	})
}

func TestListRejectsBadQueries(t *testing.T) {
	tests := []struct {
		name string
		req  contract.AuditListRequest
	}{
		{"unknown status", contract.AuditListRequest{Status: "done"}},
		{"unknown method", contract.AuditListRequest{Method: "scp"}},
		{"negative limit", contract.AuditListRequest{Limit: -1}},
		{"since after until", contract.AuditListRequest{Since: at(10), Until: at(5)}},
		{"cursor not base64", contract.AuditListRequest{Cursor: "%%%"}},
		{"cursor garbage", contract.AuditListRequest{Cursor: "Z2FyYmFnZQ"}},
	}
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, _, err := s.List(t.Context(), tt.req)
				if !errors.Is(err, auditstore.ErrInvalidQuery) {
					t.Errorf("List = %v, want ErrInvalidQuery", err)
				}
			})
		}
	})
}

// Queued lists the requests still queued created before the cutoff,
// oldest first, a page at a time after a given request; running and ended
// ones, and younger ones, are not listed.
func TestQueuedBefore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		apply(t, s,
			event(cmd("q-b"), contract.EventQueued, 1, at(1)),
			event(cmd("q-a"), contract.EventQueued, 1, at(1)),
			event(cmd("q-c"), contract.EventQueued, 1, at(0)),
			event(cmd("q-young"), contract.EventQueued, 1, at(10)),
			event(cmd("running"), contract.EventQueued, 1, at(0)), event(cmd("running"), contract.EventStarted, 2, at(2)),
			event(cmd("failed"), contract.EventQueued, 1, at(0)), event(cmd("failed"), contract.EventFailed, 2, at(2)),
		)
		ids := func(after auditstore.QueuedRequest, limit int) []auditstore.QueuedRequest {
			t.Helper()
			got, err := s.Queued(t.Context(), at(5), after, limit)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		want := []auditstore.QueuedRequest{{"q-c", toDB(at(0))}, {"q-a", toDB(at(1))}, {"q-b", toDB(at(1))}}
		if diff := cmp.Diff(ids(auditstore.QueuedRequest{}, 10), want); diff != "" {
			t.Errorf("queued before the cutoff (-got +want):\n%s", diff)
		}
		first := ids(auditstore.QueuedRequest{}, 2)
		if diff := cmp.Diff(first, want[:2]); diff != "" {
			t.Errorf("first page (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(ids(first[1], 2), want[2:]); diff != "" {
			t.Errorf("page after %s (-got +want):\n%s", first[1].ID, diff)
		}
	})
}

func toDB(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
