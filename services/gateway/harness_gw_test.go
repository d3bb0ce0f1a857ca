package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/services/gateway"
)

// gwEnv is a gateway over an embedded JetStream server behind a real HTTP
// server, for the auth, CORS, job and idempotency tests.
type gwEnv struct {
	t    *testing.T
	url  string
	nc   *nats.Conn // the test's own connection: workers, audit fakes, reads
	js   jetstream.JetStream
	logs *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startGW(t *testing.T, cfg gateway.Config, opts ...gateway.Option) *gwEnv {
	t.Helper()
	url := natstest.Start(t)
	gwNC, gwJS := natstest.Connect(t, url)
	nc, js := natstest.Connect(t, url)
	logs := &lockedBuffer{}
	h, err := gateway.NewHandler(cfg, service.Deps{
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NC:  gwNC, JS: gwJS, Registerer: prometheus.NewRegistry(), Health: telemetry.NewHealth(),
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &gwEnv{t: t, url: ts.URL, nc: nc, js: js, logs: logs}
}

type gwResp struct {
	status int
	header http.Header
	body   []byte
}

func (r gwResp) object(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// call sends a request with header pairs and checks the answer against
// the OpenAPI document.
func (g *gwEnv) call(method, path, body string, header ...string) gwResp {
	g.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.url+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	if method != http.MethodOptions {
		if err := validateResponse(method, path, resp.StatusCode, resp.Header, data); err != nil {
			g.t.Errorf("contract: %v", err)
		}
	}
	return gwResp{status: resp.StatusCode, header: resp.Header, body: data}
}

// commands returns every command on the request stream, oldest first.
func (g *gwEnv) commands() []contract.Command {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := g.js.Stream(ctx, contract.StreamRequests)
	if err != nil {
		g.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		g.t.Fatal(err)
	}
	var out []contract.Command
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // consumed by a worker
		}
		var cmd contract.Command
		if err := json.Unmarshal(msg.Data, &cmd); err != nil {
			g.t.Fatal(err)
		}
		out = append(out, cmd)
	}
	return out
}

// publishEvent publishes ev as a worker would.
func (g *gwEnv) publishEvent(ev contract.Event) {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev.SpecVersion = contract.SpecVersion
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if err := bus.PublishEvent(ctx, g.js, ev); err != nil {
		g.t.Fatal(err)
	}
}

// worker answers every command with the event decide returns (after a
// started event): a stand-in for the stager, another module.
func (g *gwEnv) worker(decide func(cmd contract.Command) contract.Event) {
	g.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := bus.EnsureConsumer(ctx, g.js, bus.ConsumerOptions{
		Stream: contract.StreamRequests, Durable: "gw-test-worker",
		FilterSubjects: contract.RequestSubjects(contract.Methods...), AckWait: 30 * time.Second, MaxDeliver: 3,
	})
	if err != nil {
		cancel()
		g.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = bus.Consume(ctx, c, 4, func(ctx context.Context, msg jetstream.Msg) {
			cmd, err := contract.DecodeCommand(msg.Data())
			if err != nil {
				g.t.Errorf("worker got a bad command: %v", err)
				return
			}
			started := contract.EventFor(cmd, contract.EventStarted)
			started.ID, started.Time, started.Source = cmd.ID+"-started", time.Now().UTC(), "test-worker"
			if err := bus.PublishEvent(ctx, g.js, started); err != nil {
				g.t.Errorf("publish started: %v", err)
			}
			ev := decide(cmd)
			base := contract.EventFor(cmd, ev.Type)
			base.ID, base.Time, base.Source = cmd.ID+"-end", time.Now().UTC(), "test-worker"
			base.Outcome, base.Error = ev.Outcome, ev.Error
			if err := bus.PublishEvent(ctx, g.js, base); err != nil {
				g.t.Errorf("publish outcome: %v", err)
			}
			if err := msg.Ack(); err != nil {
				g.t.Errorf("ack: %v", err)
			}
		})
	}()
	g.t.Cleanup(func() { cancel(); <-done })
}

// audit answers staging.audit.list with answer(query): a stand-in for the
// audit service, another module.
func (g *gwEnv) audit(answer func(q contract.AuditListRequest) contract.AuditListReply) {
	g.t.Helper()
	sub, err := g.nc.Subscribe(contract.SubjectAuditList, func(msg *nats.Msg) {
		var q contract.AuditListRequest
		if err := json.Unmarshal(msg.Data, &q); err != nil {
			g.t.Errorf("audit fake: %v", err)
			return
		}
		data, _ := json.Marshal(answer(q))
		if err := msg.Respond(data); err != nil {
			g.t.Errorf("audit fake: %v", err)
		}
	})
	if err != nil {
		g.t.Fatal(err)
	}
	if err := g.nc.Flush(); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newHandlerErr builds a gateway for cfg and returns NewHandler's error.
func newHandlerErr(t *testing.T, cfg gateway.Config) (http.Handler, error) {
	t.Helper()
	nc, js := natstest.JetStream(t)
	return gateway.NewHandler(cfg, service.Deps{
		Log: slog.New(slog.DiscardHandler), NC: nc, JS: js,
		Registerer: prometheus.NewRegistry(), Health: telemetry.NewHealth(),
	})
}
