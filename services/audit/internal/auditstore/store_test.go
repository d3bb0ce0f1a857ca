package auditstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// backends opens a fresh, empty store of each kind. The same suite runs
// against every one of them.
var backends = []struct {
	name string
	open func(t *testing.T) *auditstore.Store
}{
	{"sqlite", func(t *testing.T) *auditstore.Store {
		return openSQLite(t, filepath.Join(t.TempDir(), "audit.db"))
	}},
	{"mysql", func(t *testing.T) *auditstore.Store {
		return openMySQL(t, testenv.MySQL(t))
	}},
}

func openSQLite(t *testing.T, path string) *auditstore.Store {
	t.Helper()
	s, err := auditstore.OpenSQLite(t.Context(), path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openMySQL(t *testing.T, dsn string) *auditstore.Store {
	t.Helper()
	s, err := auditstore.OpenMySQL(t.Context(), dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func forEachBackend(t *testing.T, test func(t *testing.T, s *auditstore.Store)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.open(t)) })
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func at(seconds int) time.Time { return t0.Add(time.Duration(seconds) * time.Second) }

func ptr(t time.Time) *time.Time { return &t }

func cmd(id string) contract.Command {
	return contract.Command{
		SpecVersion: contract.SpecVersion, ID: id, JobID: "job-1", Method: contract.MethodLocalCopy,
		Username: "alice", LocalPathOnStorage: "/mnt/a/" + id + ".fits", RelativePath: "data/" + id + ".fits",
		Origin: "gateway",
	}
}

func event(c contract.Command, typ contract.EventType, seq int, when time.Time) contract.Event {
	ev := contract.EventFor(c, typ)
	ev.ID, ev.Time, ev.Source = fmt.Sprintf("%s-ev-%d", c.ID, seq), when, "test"
	switch typ {
	case contract.EventSucceeded:
		ev.Outcome, ev.Bytes, ev.Files, ev.Adler32 = contract.OutcomeStaged, 2048, 1, "0a0b0c0d"
	case contract.EventFailed, contract.EventRejected:
		ev.Error = contract.Errorf(contract.CodeSourceNotFound, "no such file")
	case contract.EventProgress:
		ev.Progress = &contract.Progress{BytesDone: 1024, BytesTotal: 2048}
	}
	return ev
}

func apply(t *testing.T, s *auditstore.Store, events ...contract.Event) auditstore.Stats {
	t.Helper()
	st, err := s.Apply(t.Context(), auditstore.Batch{Events: events})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return st
}

func get(t *testing.T, s *auditstore.Store, id string) contract.Record {
	t.Helper()
	r, _, err := s.Get(t.Context(), id, false)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return r
}

// lifecycle is the events of one successful request, in order.
func lifecycle(c contract.Command) []contract.Event {
	return []contract.Event{
		event(c, contract.EventQueued, 1, at(0)),
		event(c, contract.EventStarted, 2, at(1)),
		event(c, contract.EventProgress, 3, at(2)),
		event(c, contract.EventSucceeded, 4, at(3)),
	}
}

func succeededRecord(c contract.Command) contract.Record {
	return contract.Record{
		ID: c.ID, JobID: c.JobID, Method: c.Method, Username: c.Username,
		LocalPathOnStorage: c.LocalPathOnStorage, RelativePath: c.RelativePath,
		Status: contract.StatusSucceeded, Outcome: contract.OutcomeStaged,
		Bytes: 2048, Files: 1, Adler32: "0a0b0c0d", Origin: "gateway",
		CreatedAt: at(0), StartedAt: ptr(at(1)), FinishedAt: ptr(at(3)), UpdatedAt: at(3),
	}
}

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

// Opening an existing database applies no migration twice and keeps the
// data.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.db")
		s := openSQLite(t, path)
		apply(t, s, event(cmd("req-1"), contract.EventQueued, 1, at(0)))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s2 := openSQLite(t, path)
		if _, _, err := s2.Get(ctx, "req-1", false); err != nil {
			t.Errorf("after reopening: %v", err)
		}
	})
	t.Run("mysql", func(t *testing.T) {
		dsn := testenv.MySQL(t)
		s := openMySQL(t, dsn)
		apply(t, s, event(cmd("req-1"), contract.EventQueued, 1, at(0)))
		s2 := openMySQL(t, dsn)
		if _, _, err := s2.Get(ctx, "req-1", false); err != nil {
			t.Errorf("after reopening: %v", err)
		}
	})
}

func TestOpenMySQLBadDSNHidesPassword(t *testing.T) {
	_, err := auditstore.OpenMySQL(t.Context(), "root:s3cret@tcp(127.0.0.1:3306/x?bad", quiet)
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("OpenMySQL(bad dsn) = %v, want an error without the password", err)
	}
}

func TestPurgeDeletesOnlyFinishedBeforeCutoff(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
		old, recent, running := cmd("old"), cmd("recent"), cmd("running")
		apply(t, s, lifecycle(old)...)
		apply(t, s, event(running, contract.EventQueued, 1, at(0)), event(running, contract.EventStarted, 2, at(1)))
		for _, ev := range lifecycle(recent) {
			ev.Time = ev.Time.Add(time.Hour)
			apply(t, s, ev)
		}
		n, err := s.Purge(t.Context(), at(60))
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("purged %d requests, want 1", n)
		}
		if _, _, err := s.Get(t.Context(), "old", true); !errors.Is(err, auditstore.ErrNotFound) {
			t.Errorf("Get(old) = %v, want ErrNotFound", err)
		}
		for _, id := range []string{"recent", "running"} {
			if _, evs, err := s.Get(t.Context(), id, true); err != nil || len(evs) == 0 {
				t.Errorf("Get(%s) = %d events, %v; want it kept with its events", id, len(evs), err)
			}
		}
		// The purged request's events went with it: replaying them
		// stores them anew rather than counting them as duplicates.
		if st := apply(t, s, lifecycle(old)...); st.Events != 4 {
			t.Errorf("replay after purge stored %d events, want 4", st.Events)
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

// TestOpenStoppedWhileMigrating cancels the open at moments spread over the
// migrations: the store either opens or says it was stopped, so a service
// asked to stop while starting does not report a failure.
func TestOpenStoppedWhileMigrating(t *testing.T) {
	for i := range 40 {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Duration(i)*250*time.Microsecond, cancel)
		s, err := auditstore.OpenSQLite(ctx, filepath.Join(t.TempDir(), "audit.db"), quiet)
		cancel()
		if err == nil {
			s.Close()
			continue
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("open cancelled after %v: %v, want an error wrapping context.Canceled", time.Duration(i)*250*time.Microsecond, err)
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

// A backlog splits a request's events at every batch boundary, and a
// batch the store refused comes again after the batches behind it. The
// rows end the same whichever of two such batches is stored first.
func TestBatchesOfTheSameRequestsInEitherOrder(t *testing.T) {
	for _, firstLate := range []bool{false, true} {
		t.Run(fmt.Sprintf("first late=%v", firstLate), func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, s *auditstore.Store) {
				var first, second []contract.Event
				var want []contract.Record
				for i := range 50 {
					c := cmd(fmt.Sprintf("req-%02d", i))
					evs := lifecycle(c)
					first, second = append(first, evs[:2]...), append(second, evs[2:]...)
					want = append(want, succeededRecord(c))
				}
				order := [][]contract.Event{first, second}
				if firstLate {
					order = [][]contract.Event{second, first}
				}
				for _, batch := range order {
					if st := apply(t, s, batch...); st.Events != len(batch) {
						t.Errorf("batch stored %d events, want %d", st.Events, len(batch))
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
