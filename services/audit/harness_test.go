package audit_test

// The harness of the audit's tests: a NATS server with the streams, an
// audit started on it, and the events and queries the tests send.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/audit"
)

var quiet = slog.New(slog.DiscardHandler)

// env is a NATS server with the streams, and the pieces a Run needs.
type env struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	url string
}

func newEnv(t testing.TB) env {
	t.Helper()
	url := natstest.Start(t)
	nc, js := natstest.Connect(t, url)
	return env{nc: nc, js: js, url: url}
}

// running is one audit instance started by a test.
type running struct {
	reg    *prometheus.Registry
	health *telemetry.Health
	stop   func()
}

// start runs the audit with its own NATS connection, as a separate process
// would, until the returned stop is called (or the test ends).
func (e env) start(t testing.TB, cfg audit.Config) running {
	t.Helper()
	nc, js := natstest.Connect(t, e.url)
	r := running{reg: prometheus.NewRegistry(), health: telemetry.NewHealth()}
	deps := service.Deps{Log: quiet, NC: nc, JS: js, Registerer: r.reg, Tracer: noop.NewTracerProvider(), Health: r.health}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- audit.Run(ctx, cfg, deps) }()
	stopped := false
	r.stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil after cancel", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
		nc.Close()
	}
	t.Cleanup(r.stop)
	testenv.Eventually(t, 15*time.Second, "the audit to answer queries", func() bool {
		_, err := e.nc.Request(contract.SubjectAuditList, []byte("{}"), time.Second)
		return err == nil
	})
	return r
}

func sqliteConfig(t *testing.T) audit.Config {
	return audit.Config{
		SQLitePath: filepath.Join(t.TempDir(), "audit.db"),
		BatchSize:  100, BatchWait: 50 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		AckWait: 10 * time.Second, QueueSweepInterval: time.Minute,
	}
}

func command(id string) contract.Command {
	return contract.Command{
		SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy,
		Username: "alice", LocalPathOnStorage: "/mnt/a/" + id, RelativePath: "in/" + id, Origin: "gateway",
	}
}

// lifecycle is the events of one request: queued, started, then succeeded
// or failed.
func lifecycle(c contract.Command, n int, fail bool) []contract.Event {
	types := []contract.EventType{contract.EventQueued, contract.EventStarted, contract.EventSucceeded}
	if fail {
		types[2] = contract.EventFailed
	}
	var out []contract.Event
	for i, typ := range types {
		ev := contract.EventFor(c, typ)
		ev.ID, ev.Source = fmt.Sprintf("%s-%d", c.ID, i), "test"
		ev.Time = t0.Add(time.Duration(n)*time.Second + time.Duration(i)*time.Millisecond)
		if typ == contract.EventSucceeded {
			ev.Outcome, ev.Bytes, ev.Files = contract.OutcomeStaged, int64(n), 1
		}
		if typ == contract.EventFailed {
			ev.Error = contract.Errorf(contract.CodeSourceNotFound, "gone")
		}
		out = append(out, ev)
	}
	return out
}

func publish(t *testing.T, js jetstream.JetStream, events ...contract.Event) {
	t.Helper()
	for _, ev := range events {
		if err := bus.PublishEvent(t.Context(), js, ev); err != nil {
			t.Fatal(err)
		}
	}
}

func query[Rep any](t *testing.T, nc *nats.Conn, subject string, req any) Rep {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request(subject, data, 5*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var rep Rep
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		t.Fatalf("reply on %s: %v: %s", subject, err, msg.Data)
	}
	return rep
}

// listAll pages through every record matching req.
func listAll(t *testing.T, nc *nats.Conn, req contract.AuditListRequest) []contract.Record {
	t.Helper()
	var all []contract.Record
	for {
		rep := query[contract.AuditListReply](t, nc, contract.SubjectAuditList, req)
		if rep.Error != nil {
			t.Fatalf("list: %v", rep.Error)
		}
		all = append(all, rep.Items...)
		if rep.NextCursor == "" {
			return all
		}
		req.Cursor = rep.NextCursor
	}
}

// metric returns the value of the counter or gauge name with the given
// label values, or of the histogram's sample count.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
					return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func statuses(recs []contract.Record) map[contract.Status]int {
	out := map[contract.Status]int{}
	for _, r := range recs {
		out[r.Status]++
	}
	return out
}
