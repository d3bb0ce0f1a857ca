package jupyterbridge_test

// The harness of the bridge's tests: a bridge started against the test
// JupyterHub, and the commands sent to it with their events.

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/contract/contracttest"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
)

func TestMain(m *testing.M) { os.Exit(hubtest.Main(m)) }

type bridge struct {
	nc *nats.Conn
	js jetstream.JetStream
	// logs holds everything the service logged, at every level.
	logs *testenv.Buffer
}

// startBridge runs the service against an embedded NATS server until the
// test ends, and checks that it then returns nil.
func startBridge(t testing.TB, cfg jupyterbridge.Config) bridge {
	t.Helper()
	nc, js := natstest.JetStream(t)
	ctx, cancel := context.WithCancel(t.Context())
	logs := &testenv.Buffer{}
	deps := service.Deps{
		Log:        slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NC:         nc,
		JS:         js,
		Registerer: prometheus.NewRegistry(),
		Tracer:     noop.NewTracerProvider(),
		Health:     telemetry.NewHealth(),
	}
	done := make(chan error, 1)
	go func() { done <- jupyterbridge.Run(ctx, cfg, deps) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return within 30s of cancellation")
		}
	})
	return bridge{nc: nc, js: js, logs: logs}
}

// testConfig is a bridge configuration for tests against hubURL with the
// service token, staging from src.
func testConfig(hubURL, token, src string) jupyterbridge.Config {
	return jupyterbridge.Config{
		HubURL: hubURL, HubToken: token, SourceRoot: src, AllowedMethods: []string{string(contract.MethodJupyterCopy)},
		ChunkSize: 4, SpawnTimeout: time.Minute, Concurrency: 2, AckWait: 30 * time.Second, MaxDeliver: 5, StageTimeout: 5 * time.Minute,
	}
}

// command is a jupyter_copy command with a fresh id.
func command(user, source, target, token string) contract.Command {
	return contract.Command{
		SpecVersion:        contract.SpecVersion,
		ID:                 uuid.NewString(),
		Method:             contract.MethodJupyterCopy,
		Username:           user,
		LocalPathOnStorage: source,
		RelativePath:       target,
		JupyterToken:       token,
		Origin:             "test",
		RequestedAt:        time.Now().UTC(),
	}
}

// stage publishes cmd and returns the events of the request up to the
// terminal one, each checked against the event schema and for the
// secrets, which none may contain.
func (b bridge) stage(t testing.TB, cmd contract.Command, secrets ...string) []contract.Event {
	t.Helper()
	return b.stageWith(t, cmd, nil, secrets...)
}

// stageWith is stage calling onEvent (when not nil) with each event as it
// arrives.
func (b bridge) stageWith(t testing.TB, cmd contract.Command, onEvent func(contract.Event), secrets ...string) []contract.Event {
	t.Helper()
	schema := contracttest.Schema(t, contracttest.Event)
	sub, err := b.nc.SubscribeSync(contract.EventSubject(cmd.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := bus.PublishCommand(t.Context(), b.js, cmd); err != nil {
		t.Fatal(err)
	}
	var events []contract.Event
	deadline := time.Now().Add(2 * time.Minute)
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no terminal event for %s within the deadline (got %d events): %v", cmd.ID, len(events), err)
		}
		contracttest.Check(t, schema, msg.Data)
		for _, s := range secrets {
			if s != "" && bytes.Contains(msg.Data, []byte(s)) {
				t.Errorf("event reveals a token: %s", msg.Data)
			}
		}
		var ev contract.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Source != "jupyter-bridge" || ev.RequestID != cmd.ID || ev.Username != cmd.Username || ev.Attempt < 1 {
			t.Errorf("event does not describe the request: %+v", ev)
		}
		events = append(events, ev)
		if onEvent != nil {
			onEvent(ev)
		}
		if ev.Type.Terminal() {
			return events
		}
	}
}

// outcome is what a test compares of a request's terminal event.
type outcome struct {
	Type    contract.EventType
	Outcome contract.Outcome
	Code    contract.Code
	Bytes   int64
	Files   int64
}

func outcomeOf(ev contract.Event) outcome {
	got := outcome{Type: ev.Type, Outcome: ev.Outcome, Bytes: ev.Bytes, Files: ev.Files}
	if ev.Error != nil {
		got.Code = ev.Error.Code
	}
	return got
}

func waitForConsumer(t *testing.T, b bridge) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, "the bridge's consumer", func() bool {
		_, err := b.js.Consumer(t.Context(), contract.StreamRequests, contract.ConsumerJupyterBridge)
		return err == nil
	})
}
