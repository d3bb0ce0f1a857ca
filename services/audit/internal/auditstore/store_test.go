package auditstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// reopenBefore records, in a store of each kind, what record applies,
// takes the database back to before the migration of the given version
// (by backend), and opens it again, which applies the migrations from
// that one on; check then reads the records.
func reopenBefore(t *testing.T, versions map[string]int64, record, check func(t *testing.T, s *auditstore.Store)) {
	for _, b := range []struct {
		name string
		open func(t *testing.T) func() *auditstore.Store
	}{
		{"sqlite", func(t *testing.T) func() *auditstore.Store {
			path := filepath.Join(t.TempDir(), "audit.db")
			return func() *auditstore.Store { return openSQLite(t, path) }
		}},
		{"mysql", func(t *testing.T) func() *auditstore.Store {
			dsn := testenv.MySQL(t)
			return func() *auditstore.Store { return openMySQL(t, dsn) }
		}},
	} {
		t.Run(b.name, func(t *testing.T) {
			open := b.open(t)
			s := open()
			record(t, s)
			if err := s.DownTo(t.Context(), versions[b.name]-1); err != nil {
				t.Fatalf("migrate down to before version %d: %v", versions[b.name], err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			check(t, open())
		})
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
