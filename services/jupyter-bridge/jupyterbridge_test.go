package jupyterbridge_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
)

func TestMain(m *testing.M) { os.Exit(hubtest.Main(m)) }

type bridge struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// startBridge runs the service against an embedded NATS server until the
// test ends, and checks that it then returns nil.
func startBridge(t *testing.T, cfg jupyterbridge.Config) bridge {
	t.Helper()
	nc, js := natstest.JetStream(t)
	ctx, cancel := context.WithCancel(t.Context())
	deps := service.Deps{
		Log:        slog.New(slog.DiscardHandler),
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
	return bridge{nc: nc, js: js}
}

// stage publishes a jupyter_copy command and returns the events of the
// request up to the terminal one.
func (b bridge) stage(t *testing.T, user, source, target string) []contract.Event {
	t.Helper()
	cmd := contract.Command{
		SpecVersion:        contract.SpecVersion,
		ID:                 uuid.NewString(),
		Method:             contract.MethodJupyterCopy,
		Username:           user,
		LocalPathOnStorage: source,
		RelativePath:       target,
		Origin:             "test",
		RequestedAt:        time.Now().UTC(),
	}
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
		var ev contract.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Source != "jupyter-bridge" || ev.RequestID != cmd.ID || ev.Username != user || ev.Attempt < 1 {
			t.Errorf("event does not describe the request: %+v", ev)
		}
		events = append(events, ev)
		if ev.Type.Terminal() {
			return events
		}
	}
}

func TestJupyterCopyEndToEnd(t *testing.T) {
	hub := hubtest.Get(t)
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "obs/tree/sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{"obs/file.fits": "SIMPLE  = T", "obs/tree/a.txt": "a", "obs/tree/sub/b.txt": "bb"} {
		if err := os.WriteFile(filepath.Join(src, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := startBridge(t, jupyterbridge.Config{
		HubURL: hub.URL, HubToken: hub.Token, SourceRoot: src,
		ChunkSize: 4, SpawnTimeout: time.Minute, Concurrency: 2, AckWait: 30 * time.Second, MaxDeliver: 3, StageTimeout: 5 * time.Minute,
	})
	user := hub.NewUser(t)

	type outcome struct {
		Type    contract.EventType
		Outcome contract.Outcome
		Code    contract.Code
		Bytes   int64
		Files   int64
	}
	tests := []struct {
		name           string
		user           string
		source, target string
		want           outcome
		onDisk         map[string]string
	}{
		{"file, server stopped", user, filepath.Join(src, "obs/file.fits"), "in/file.fits",
			outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 11, Files: 1},
			map[string]string{"in/file.fits": "SIMPLE  = T"}},
		{"tree", user, "obs/tree", "tree",
			outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 3, Files: 2},
			map[string]string{"tree/a.txt": "a", "tree/sub/b.txt": "bb"}},
		{"existing target", user, "obs/tree/a.txt", "in/file.fits",
			outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeAlreadyPresent},
			map[string]string{"in/file.fits": "SIMPLE  = T"}},
		{"unknown user", "nobody-at-all", "obs/file.fits", "x",
			outcome{Type: contract.EventFailed, Code: hubclient.CodeUserNotFound}, nil},
		{"missing source", user, "obs/none", "y",
			outcome{Type: contract.EventFailed, Code: contract.CodeSourceNotFound}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := b.stage(t, tt.user, tt.source, tt.target)
			if events[0].Type != contract.EventStarted {
				t.Errorf("first event = %s, want started", events[0].Type)
			}
			last := events[len(events)-1]
			got := outcome{Type: last.Type, Outcome: last.Outcome, Bytes: last.Bytes, Files: last.Files}
			if last.Error != nil {
				got.Code = last.Error.Code
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s\nlast event: %+v", diff, last)
			}
			for p, want := range tt.onDisk {
				data, err := os.ReadFile(hub.UserPath(user, p))
				if err != nil {
					t.Error(err)
					continue
				}
				if string(data) != want {
					t.Errorf("%s holds %q, want %q", p, data, want)
				}
			}
			for _, ev := range events {
				raw, _ := json.Marshal(ev)
				if s := string(raw); strings.Contains(s, hub.Token) {
					t.Errorf("event reveals the token: %s", s)
				}
			}
		})
	}
}

// Without a hub the service consumes nothing and waits for its end.
func TestRunWithoutHub(t *testing.T) {
	b := startBridge(t, jupyterbridge.Config{SourceRoot: "/does/not/matter"})
	info, err := b.js.Consumer(t.Context(), contract.StreamRequests, contract.ConsumerJupyterBridge)
	if err == nil {
		t.Errorf("consumer %s exists without a hub: %+v", contract.ConsumerJupyterBridge, info.CachedInfo())
	}
}

func TestApplyHubEnv(t *testing.T) {
	t.Setenv(jupyterbridge.EnvHubURL, "http://hub.example:8000")
	t.Setenv(jupyterbridge.EnvHubToken, "from-env-token")
	tests := []struct {
		name string
		in   jupyterbridge.Config
		want jupyterbridge.Config
	}{
		{"empty takes the environment", jupyterbridge.Config{},
			jupyterbridge.Config{HubURL: "http://hub.example:8000", HubToken: "from-env-token"}},
		{"flags win", jupyterbridge.Config{HubURL: "http://flag:1", HubToken: "flag-token"},
			jupyterbridge.Config{HubURL: "http://flag:1", HubToken: "flag-token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in
			jupyterbridge.ApplyHubEnv(&got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ApplyHubEnv (-want +got):\n%s", diff)
			}
		})
	}
}
