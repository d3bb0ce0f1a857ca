package jupyterbridge_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
)

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
	b := startBridge(t, testConfig(hub.URL, hub.Token, src))
	user, other := hub.NewUser(t), hub.NewUser(t)
	otherToken := hub.UserToken(t, other)
	wrongToken := "wrong-token-" + uuid.NewString()
	secrets := []string{hub.Token, otherToken, wrongToken}

	tests := []struct {
		name           string
		user           string
		token          string // the command's jupyter_token
		source, target string
		want           outcome
		onDisk         map[string]string // path under the user's root -> content
	}{
		{"file, server stopped", user, "", filepath.Join(src, "obs/file.fits"), "in/file.fits",
			outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 11, Files: 1},
			map[string]string{"in/file.fits": "SIMPLE  = T"}},
		{"tree", user, "", "obs/tree", "tree",
			outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 3, Files: 2},
			map[string]string{"tree/a.txt": "a", "tree/sub/b.txt": "bb"}},
		{"existing target", user, "", "obs/tree/a.txt", "in/file.fits",
			outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeAlreadyPresent},
			map[string]string{"in/file.fits": "SIMPLE  = T"}},
		{"unknown user", "nobody-at-all", "", "obs/file.fits", "x",
			outcome{Type: contract.EventFailed, Code: hubclient.CodeUserNotFound}, nil},
		{"missing source", user, "", "obs/none", "y",
			outcome{Type: contract.EventFailed, Code: contract.CodeSourceNotFound}, nil},
		// The user's own token starts their server and uploads; the hub
		// would refuse it for anyone else's.
		{"own token, server stopped", other, otherToken, "obs/tree", "mine/tree",
			outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 3, Files: 2},
			map[string]string{"mine/tree/a.txt": "a", "mine/tree/sub/b.txt": "bb"}},
		{"wrong per-request token", user, wrongToken, "obs/file.fits", "wrong/file.fits",
			outcome{Type: contract.EventFailed, Code: hubclient.CodeForbidden}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			events := b.stage(t, command(tt.user, tt.source, tt.target, tt.token), secrets...)
			if events[0].Type != contract.EventStarted {
				t.Errorf("first event = %s, want started", events[0].Type)
			}
			last := events[len(events)-1]
			if diff := cmp.Diff(outcomeOf(last), tt.want); diff != "" {
				t.Errorf("outcome (-got +want):\n%s\nlast event: %+v", diff, last)
			}
			for p, want := range tt.onDisk {
				data, err := os.ReadFile(hub.UserPath(tt.user, p))
				if err != nil {
					t.Error(err)
					continue
				}
				if string(data) != want {
					t.Errorf("%s holds %q, want %q", p, data, want)
				}
			}
		})
	}
	if _, err := os.Stat(hub.UserPath(user, "wrong")); !os.IsNotExist(err) {
		t.Errorf("the wrong token created something: stat wrong = %v", err)
	}
	// The worker logs a failure right after publishing its event.
	testenv.Eventually(t, 10*time.Second, "the refused token's failure in the logs", func() bool {
		return strings.Contains(b.logs.String(), "jupyter_forbidden")
	})
	logs := b.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs reveal a token:\n%s", logs)
		}
	}
}

// A hub that cannot be reached is retried with a growing delay between
// deliveries; once it answers again the request succeeds.
func TestJupyterCopyHubDownThenBack(t *testing.T) {
	hub := hubtest.Get(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte("after the outage"), 0o644); err != nil {
		t.Fatal(err)
	}
	outage := hub.Outage(t) // down
	b := startBridge(t, testConfig(outage.URL, hub.Token, src))
	user := hub.NewUser(t)

	var started []time.Time
	events := b.stageWith(t, command(user, "f.txt", "f.txt", ""), func(ev contract.Event) {
		if ev.Type != contract.EventStarted {
			return
		}
		started = append(started, ev.Time)
		if ev.Attempt == 2 {
			outage.Up(t) // a delivery has failed and been retried
		}
	}, hub.Token)

	last := events[len(events)-1]
	want := outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 16, Files: 1}
	if diff := cmp.Diff(outcomeOf(last), want); diff != "" {
		t.Fatalf("outcome (-got +want):\n%s\nevents: %+v", diff, events)
	}
	if last.Attempt < 2 || len(started) != last.Attempt {
		t.Errorf("succeeded on attempt %d after %d started events, want a retry, one started event per delivery", last.Attempt, len(started))
	}
	if len(started) >= 2 {
		if gap := started[1].Sub(started[0]); gap < 900*time.Millisecond {
			t.Errorf("second delivery %s after the first, want a back-off of about 1 s", gap)
		}
	}
	data, err := os.ReadFile(hub.UserPath(user, "f.txt"))
	if err != nil || string(data) != "after the outage" {
		t.Errorf("f.txt = %q, %v; want the uploaded content", data, err)
	}
	testenv.Eventually(t, 10*time.Second, "the unreachable hub in the logs", func() bool {
		return strings.Contains(b.logs.String(), "jupyter_unavailable")
	})
}

// A server that cannot start (the user's notebook directory is a file) is
// a verdict, not an outage: the request fails on its first delivery.
func TestJupyterCopySpawnFailed(t *testing.T) {
	hub := hubtest.Get(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, testConfig(hub.URL, hub.Token, src))
	user := hub.NewUser(t)
	if err := os.WriteFile(hub.UserPath(user, ""), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}

	events := b.stage(t, command(user, "f.txt", "f.txt", ""), hub.Token)
	last := events[len(events)-1]
	if diff := cmp.Diff(outcomeOf(last), outcome{Type: contract.EventFailed, Code: hubclient.CodeSpawnFailed}); diff != "" {
		t.Errorf("outcome (-got +want):\n%s\nlast event: %+v", diff, last)
	}
	if last.Attempt != 1 {
		t.Errorf("failed on attempt %d, want 1: a failed spawn is not retried", last.Attempt)
	}
}

// A command the bridge must refuse is refused before any call to the hub:
// here there is none to call.
func TestRefusedWithoutHubCalls(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		allowed  []string
		checksum string
		want     outcome
	}{
		{
			name:    "jupyter_copy not allowed at the site",
			allowed: []string{string(contract.MethodLocalCopy), string(contract.MethodDirectDownload)},
			want:    outcome{Type: contract.EventRejected, Code: contract.CodeMethodNotAllowed},
		},
		{
			name:     "a checksum the upload cannot check",
			allowed:  []string{string(contract.MethodJupyterCopy)},
			checksum: "00000001",
			want:     outcome{Type: contract.EventFailed, Code: contract.CodeMalformed},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Nothing listens there: any hub call would fail as unavailable.
			cfg := testConfig("http://127.0.0.1:1", "unused-token", src)
			cfg.AllowedMethods = tt.allowed
			b := startBridge(t, cfg)
			waitForConsumer(t, b)
			cmd := command("alice", "f.txt", "f.txt", "")
			cmd.ExpectedAdler32 = tt.checksum
			events := b.stage(t, cmd)
			last := events[len(events)-1]
			if diff := cmp.Diff(outcomeOf(last), tt.want); diff != "" {
				t.Errorf("outcome (-got +want):\n%s\nevents: %+v", diff, events)
			}
			if last.Attempt != 1 {
				t.Errorf("ended on attempt %d, want 1: the refusal is final", last.Attempt)
			}
		})
	}
}

// Without a hub the service still takes every jupyter_copy command and
// rejects it at once with method_not_allowed, recorded as a rejected event,
// so none stays queued unseen; it says so in its log.
func TestRunWithoutHub(t *testing.T) {
	cfg := testConfig("", "", "/does/not/matter")
	cfg.AllowedMethods = []string{"local_copy", "jupyter_copy"}
	b := startBridge(t, cfg)
	events := b.stage(t, command("alice", "obs/x.fits", "x.fits", "secret-token"), "secret-token")
	if len(events) != 1 || events[0].Type != contract.EventRejected || events[0].Error == nil || events[0].Error.Code != contract.CodeMethodNotAllowed {
		t.Fatalf("events: got %+v, want one rejected with method_not_allowed", events)
	}
	s, err := b.js.Stream(t.Context(), contract.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "the rejected command leaves the work queue", func() bool {
		info, err := s.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
	if !strings.Contains(b.logs.String(), `"msg":"jupyter_copy_off"`) {
		t.Errorf("log does not say that jupyter_copy is off:\n%s", b.logs.String())
	}
}

// A target name no filesystem takes is the request's fault: the request
// fails at its first delivery with invalid_path, and the hub (unreachable
// here, which would be retried) is never asked.
func TestNameTooLongFailsAtOnce(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "x.fits"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBridge(t, testConfig("http://127.0.0.1:1", "token", src))
	events := b.stage(t, command("alice", "x.fits", "data/"+strings.Repeat("n", 300), ""))
	last := events[len(events)-1]
	if last.Type != contract.EventFailed || last.Error == nil || last.Error.Code != contract.CodeInvalidPath || last.Attempt != 1 {
		t.Fatalf("events: got %+v, want failed with invalid_path on attempt 1", events)
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
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ApplyHubEnv (-got +want):\n%s", diff)
			}
		})
	}
}
