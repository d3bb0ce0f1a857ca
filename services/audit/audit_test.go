package audit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/audit"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestRecordsEventsAndAnswersQueries(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, sqliteConfig(t))
	const n = 60
	var published []contract.Event
	for i := range n {
		evs := lifecycle(command(fmt.Sprintf("req-%02d", i)), i, i%5 == 0)
		published = append(published, evs...)
	}
	publish(t, e.js, published...)

	testenv.Eventually(t, 15*time.Second, "every request to be recorded as finished", func() bool {
		got := statuses(listAll(t, e.nc, contract.AuditListRequest{Limit: 25}))
		return got[contract.StatusSucceeded] == n*4/5 && got[contract.StatusFailed] == n/5
	})

	t.Run("get with events", func(t *testing.T) {
		c := command("req-07")
		rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: c.ID, WithEvents: true})
		if rep.Error != nil || rep.Record == nil {
			t.Fatalf("get: %+v", rep)
		}
		want := lifecycle(c, 7, false)
		if diff := cmp.Diff(rep.Events, want); diff != "" {
			t.Errorf("events (-got +want):\n%s", diff)
		}
		if got := rep.Record; got.Status != contract.StatusSucceeded || got.Bytes != 7 || got.Username != "alice" ||
			!got.CreatedAt.Equal(want[0].Time) || got.FinishedAt == nil || !got.FinishedAt.Equal(want[2].Time) {
			t.Errorf("record = %+v", got)
		}
	})
	t.Run("list with filters", func(t *testing.T) {
		got := listAll(t, e.nc, contract.AuditListRequest{Status: contract.StatusFailed, Limit: 5})
		var ids []string
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		want := []string{"req-55", "req-50", "req-45", "req-40", "req-35", "req-30", "req-25", "req-20", "req-15", "req-10", "req-05", "req-00"}
		if diff := cmp.Diff(ids, want); diff != "" {
			t.Errorf("failed requests, newest first (-got +want):\n%s", diff)
		}
	})
	errorTests := []struct {
		name    string
		subject string
		body    string
		want    contract.Code
	}{
		{"get unknown", contract.SubjectAuditGet, `{"id":"nope"}`, contract.CodeNotFound},
		{"get without id", contract.SubjectAuditGet, `{}`, contract.CodeMissingField},
		{"get bad id", contract.SubjectAuditGet, `{"id":"a.b"}`, contract.CodeInvalidID},
		{"get not JSON", contract.SubjectAuditGet, `{`, contract.CodeMalformed},
		{"list unknown status", contract.SubjectAuditList, `{"status":"done"}`, contract.CodeMalformed},
		{"list bad cursor", contract.SubjectAuditList, `{"cursor":"!!"}`, contract.CodeMalformed},
		{"list bad time", contract.SubjectAuditList, `{"since":"yesterday"}`, contract.CodeMalformed},
	}
	for _, tt := range errorTests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := e.nc.Request(tt.subject, []byte(tt.body), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var rep struct {
				Error *contract.Error `json:"error"`
			}
			if err := json.Unmarshal(msg.Data, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Error == nil || rep.Error.Code != tt.want {
				t.Errorf("reply %s, want error code %s", msg.Data, tt.want)
			}
		})
	}
	t.Run("metrics and readiness", func(t *testing.T) {
		if got, want := metric(t, a.reg, "staging_audit_events_total", "result", "stored"), float64(len(published)); got != want {
			t.Errorf("stored events = %v, want %v", got, want)
		}
		if got, want := metric(t, a.reg, "staging_audit_rows_written_total"), float64(n); got < want {
			t.Errorf("rows written = %v, want at least %v", got, want)
		}
		if got := metric(t, a.reg, "staging_audit_batch_seconds"); got < 1 {
			t.Errorf("batches timed = %v, want some", got)
		}
		if failed := a.health.Ready(t.Context()); len(failed) > 0 {
			t.Errorf("not ready: %v", failed)
		}
	})
}

// A message that is not an event is set apart on its own (acknowledged,
// not retried); the events around it are stored.
func TestPoisonMessageDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	a := e.start(t, sqliteConfig(t))
	good := lifecycle(command("req-1"), 1, false)
	publish(t, e.js, good[0])
	for _, body := range []string{"not json", `{"id":"e-x","type":"queued"}`, `{"id":"","request_id":"r","time":"2026-01-01T00:00:00Z"}`} {
		if _, err := e.js.Publish(t.Context(), contract.EventSubject("junk"), []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, e.js, good[1:]...)
	testenv.Eventually(t, 15*time.Second, "the good request to be recorded", func() bool {
		rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: "req-1"})
		return rep.Record != nil && rep.Record.Status == contract.StatusSucceeded
	})
	testenv.Eventually(t, 15*time.Second, "the poison to be terminated", func() bool {
		c, err := e.js.Consumer(t.Context(), contract.StreamEvents, contract.ConsumerAudit)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if got := metric(t, a.reg, "staging_audit_events_total", "result", "invalid"); got != 3 {
		t.Errorf("invalid events = %v, want 3", got)
	}
}

// An event without a trace id takes the one of the trace it travelled in.
func TestEventGapsFilledFromTheMessage(t *testing.T) {
	// As telemetry.NewTracerProvider sets it in every process.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	e := newEnv(t)
	e.start(t, sqliteConfig(t))
	ev := lifecycle(command("req-1"), 1, false)[0]
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	msg := &nats.Msg{Subject: contract.EventSubject(ev.RequestID), Header: nats.Header{}}
	msg.Header.Set("traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	var err error
	if msg.Data, err = json.Marshal(ev); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
	var rep contract.AuditGetReply
	testenv.Eventually(t, 15*time.Second, "the request to be recorded", func() bool {
		rep = query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: "req-1", WithEvents: true})
		return rep.Record != nil
	})
	if rec := rep.Record; rec.TraceID != traceID || !rec.CreatedAt.Equal(ev.Time) {
		t.Errorf("trace id %q, created %s; want %q and %s", rec.TraceID, rec.CreatedAt, traceID, ev.Time)
	}
	// The stored event is the one filled in, not the message as received.
	if len(rep.Events) != 1 || rep.Events[0].TraceID != traceID {
		t.Errorf("events = %+v, want one with trace id %s", rep.Events, traceID)
	}
}

// A message is stored as received when decoding added nothing to it (an
// unknown field then stays in the stored message, and reading it back
// ignores it), and encoded again when it is not valid UTF-8, which a MySQL
// text column would refuse: both are recorded, on every backend.
func TestEventsStoredAsReceivedOrEncoded(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend.name, func(t *testing.T) {
			e := newEnv(t)
			e.start(t, backend.cfg(t))
			evs := lifecycle(command("req-1"), 1, false)
			evs[1].Source = "stager XFF"
			for i, ev := range evs {
				data, err := json.Marshal(ev)
				if err != nil {
					t.Fatal(err)
				}
				switch i {
				case 0:
					data = append(data[:len(data)-1], `,"added_later":{"x":[1,2]}}`...)
				case 1:
					// A byte that is not UTF-8 inside a string.
					data = bytes.Replace(data, []byte("XFF"), []byte{0xff}, 1)
				}
				if _, err := e.js.Publish(t.Context(), contract.EventSubject(ev.RequestID), data); err != nil {
					t.Fatal(err)
				}
			}
			var rep contract.AuditGetReply
			testenv.Eventually(t, 15*time.Second, "the three events to be recorded", func() bool {
				rep = query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: "req-1", WithEvents: true})
				return rep.Record != nil && len(rep.Events) == 3
			})
			if rep.Record.Status != contract.StatusSucceeded {
				t.Errorf("status = %s, want succeeded", rep.Record.Status)
			}
			for i, got := range rep.Events {
				want := evs[i]
				if i == 1 {
					want.Source = "stager \uFFFD"
				}
				if got.ID != want.ID || got.Type != want.Type || !got.Time.Equal(want.Time) || got.Source != want.Source || got.Username != want.Username {
					t.Errorf("event %d = %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

// Replaying the whole stream from the start (a new consumer, or one reset
// by an operator) leaves the record as it was.
func TestReplayFromTheStartChangesNothing(t *testing.T) {
	e := newEnv(t)
	cfg := sqliteConfig(t)
	a := e.start(t, cfg)
	const n = 40
	var published []contract.Event
	for i := range n {
		published = append(published, lifecycle(command(fmt.Sprintf("req-%02d", i)), i, i%3 == 0)...)
	}
	publish(t, e.js, published...)
	testenv.Eventually(t, 15*time.Second, "every event to be stored", func() bool {
		return metric(t, a.reg, "staging_audit_events_total", "result", "stored") == float64(len(published))
	})
	replayUnchanged(t, e, a, cfg, len(published))
}

// Requests whose first event comes after their others (as after an outage,
// when given-back events come again behind later ones) make a batch's
// commit begin its transaction again, reading every row. On SQLite, with
// its one writer connection, that must not wait for the batch staged
// behind it: every event is stored without a batch refused.
func TestLateFirstEventsDoNotStallSQLite(t *testing.T) {
	e := newEnv(t)
	cfg := sqliteConfig(t)
	cfg.BatchSize = 10 // many batches, so one is always staged behind
	const n = 60
	var started, rest []contract.Event
	for i := range n {
		evs := lifecycle(command(fmt.Sprintf("req-%02d", i)), i, false)
		started = append(started, evs[1])
		rest = append(rest, evs[0], evs[2])
	}
	publish(t, e.js, append(started, rest...)...)
	a := e.start(t, cfg)
	testenv.Eventually(t, 30*time.Second, "every event to be stored", func() bool {
		return metric(t, a.reg, "staging_audit_events_total", "result", "stored") == 3*n
	})
	if got := metric(t, a.reg, "staging_audit_db_errors_total"); got != 0 {
		t.Errorf("%v batches refused, want none", got)
	}
	records := listAll(t, e.nc, contract.AuditListRequest{Limit: 500})
	if len(records) != n {
		t.Errorf("%d records, want %d", len(records), n)
	}
	for _, r := range records {
		if r.Status != contract.StatusSucceeded {
			t.Errorf("%s is %s, want succeeded", r.ID, r.Status)
		}
	}
}

// replayUnchanged stops a, which has stored n events, replays the whole
// stream into a new audit (the consumer deleted, as an operator resetting
// it would) and checks that nothing was stored again and that every record
// reads as before.
func replayUnchanged(t *testing.T, e env, a running, cfg audit.Config, n int) {
	t.Helper()
	before := snapshot(t, e.nc)
	a.stop()
	if err := e.js.DeleteConsumer(t.Context(), contract.StreamEvents, contract.ConsumerAudit); err != nil {
		t.Fatal(err)
	}
	b := e.start(t, cfg)
	testenv.Eventually(t, 15*time.Second, "the replay to be consumed", func() bool {
		return metric(t, b.reg, "staging_audit_events_total", "result", "duplicate") == float64(n)
	})
	if got := metric(t, b.reg, "staging_audit_events_total", "result", "stored"); got != 0 {
		t.Errorf("events stored again = %v, want 0", got)
	}
	if diff := cmp.Diff(snapshot(t, e.nc), before); diff != "" {
		t.Errorf("replay changed the record (-after +before):\n%s", diff)
	}
}

type record struct {
	Record    contract.Record
	Events    []contract.Event
	Downloads []contract.DownloadEvent
}

// snapshot reads every record with its events through the queries.
func snapshot(t *testing.T, nc *nats.Conn) []record {
	t.Helper()
	var out []record
	for _, r := range listAll(t, nc, contract.AuditListRequest{Limit: 500}) {
		rep := query[contract.AuditGetReply](t, nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: r.ID, WithEvents: true})
		if rep.Record == nil {
			t.Fatalf("get %s: %v", r.ID, rep.Error)
		}
		out = append(out, record{*rep.Record, rep.Events, rep.Downloads})
	}
	return out
}

func TestConfigIsChecked(t *testing.T) {
	e := newEnv(t)
	good := sqliteConfig(t)
	tests := []struct {
		name   string
		change func(*audit.Config)
	}{
		{"no database", func(c *audit.Config) { c.SQLitePath = "" }},
		{"zero batch", func(c *audit.Config) { c.BatchSize = 0 }},
		{"zero wait", func(c *audit.Config) { c.BatchWait = 0 }},
		{"negative retention", func(c *audit.Config) { c.Retention = -time.Hour }},
		{"zero retry delay", func(c *audit.Config) { c.RetryMin = 0 }},
		{"retry maximum below its minimum", func(c *audit.Config) { c.RetryMax = c.RetryMin / 2 }},
		{"short ack wait", func(c *audit.Config) { c.AckWait = time.Second }},
		{"zero queue sweep interval", func(c *audit.Config) { c.QueueSweepInterval = 0 }},
		{"unreachable mysql", func(c *audit.Config) { c.MySQLDSN = "u:p@tcp(127.0.0.1:1)/x?timeout=1s" }},
		{"sqlite in a missing directory", func(c *audit.Config) { c.SQLitePath = filepath.Join(t.TempDir(), "no", "such", "audit.db") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			deps := service.Deps{Log: quiet, NC: e.nc, JS: e.js, Registerer: prometheus.NewRegistry(), Tracer: noop.NewTracerProvider(), Health: telemetry.NewHealth()}
			if err := audit.Run(t.Context(), cfg, deps); err == nil {
				t.Error("Run = nil, want a start-up error")
			}
		})
	}
}

// backends are the audit's two databases, for the tests that run on each:
// SQLite, and the MySQL/MariaDB named by STAGING_TEST_MYSQL_DSN.
var backends = []struct {
	name string
	cfg  func(t *testing.T) audit.Config
}{
	{"sqlite", sqliteConfig},
	{"mysql", func(t *testing.T) audit.Config {
		cfg := sqliteConfig(t)
		cfg.MySQLDSN = testenv.MySQL(t)
		return cfg
	}},
}

// A request by DID is recorded with its DID and its resolved events. The
// history of one whose resolution is larger than a NATS message still
// comes back: its resolved events without their paths, and saying so.
func TestResolvedEventsInTheHistory(t *testing.T) {
	e := newEnv(t)
	e.start(t, sqliteConfig(t))
	resolvedLifecycle := func(id string, files, parts int) []contract.Event {
		c := command(id)
		c.LocalPathOnStorage, c.DID = "", "testsrc:"+id
		evs := lifecycle(c, 1, false)
		paths := make([]string, files)
		for i := range paths {
			paths[i] = fmt.Sprintf("testsrc/%s/%0100d", id, i)
		}
		var resolved []contract.Event
		for i, part := range contract.ResolvedParts(paths, int64(files)) {
			ev := contract.EventFor(c, contract.EventResolved)
			ev.ID, ev.Source, ev.Time = fmt.Sprintf("%s-resolved-%d", id, i), "test", evs[1].Time.Add(time.Duration(i+1)*time.Microsecond)
			ev.Resolved = &part
			resolved = append(resolved, ev)
		}
		if len(resolved) != parts {
			t.Fatalf("%d parts, want %d", len(resolved), parts)
		}
		return append(evs[:2:2], append(resolved, evs[2])...)
	}
	small := resolvedLifecycle("small", 2, 1)
	large := resolvedLifecycle("large", 12*contract.MaxResolvedPaths, 12)
	publish(t, e.js, small...)
	publish(t, e.js, large...)
	testenv.Eventually(t, 15*time.Second, "both requests to be recorded as finished", func() bool {
		return statuses(listAll(t, e.nc, contract.AuditListRequest{}))[contract.StatusSucceeded] == 2
	})
	for _, tt := range []struct {
		events  []contract.Event
		omitted bool
	}{{small, false}, {large, true}} {
		id := tt.events[0].RequestID
		rep := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: id, WithEvents: true})
		if rep.Error != nil || rep.Record == nil || rep.Record.DID != "testsrc:"+id {
			t.Fatalf("%s: %+v", id, rep)
		}
		want := tt.events
		if tt.omitted {
			want = nil
			for _, ev := range tt.events {
				if ev.Resolved != nil {
					bare := *ev.Resolved
					bare.Paths = []string{}
					ev.Resolved = &bare
				}
				want = append(want, ev)
			}
		}
		if diff := cmp.Diff(rep.Events, want); diff != "" || rep.ResolvedPathsOmitted != tt.omitted {
			t.Errorf("%s: resolved_paths_omitted %v, events (-got +want):\n%s", id, rep.ResolvedPathsOmitted, diff)
		}
	}
}
