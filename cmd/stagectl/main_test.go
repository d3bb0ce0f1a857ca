package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The end-to-end tests run every command against the all-in-one stagingd,
// built once and started here as a process of its own: real NATS
// (embedded in it), real files under a temporary data directory, bearer
// tokens on.

// server is the all-in-one the tests share.
var server struct {
	url     string
	dataDir string
	// bin holds the built stagectl, for the tests that need a process
	// (the pseudo-terminal).
	stagectlBin string
}

// Tokens of the all-in-one: ops may act for anyone, alice only for herself.
const (
	adminToken = "ops-token-0123456789"
	aliceToken = "alice-token-0123456789"
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "stagectl-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	stop, err := startServer(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stagectl tests:", err)
		return 1
	}
	defer stop()
	code := m.Run()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "stagingd's log:\n%s\n", lastLines(serverLog.String(), 40))
	}
	return code
}

// serverLog is what stagingd logged, shown when a test fails.
var serverLog = &lockedBuffer{}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// startServer builds stagingd and stagectl into dir, starts stagingd on
// free ports and waits until it is ready.
func startServer(dir string) (stop func(), err error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "stagingd")
	server.stagectlBin = filepath.Join(dir, "stagectl")
	for _, b := range []struct{ out, pkg string }{{bin, "../stagingd"}, {server.stagectlBin, "."}} {
		build := exec.Command(goBin, "build", "-o", b.out, ".")
		build.Dir = b.pkg
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	server.dataDir = filepath.Join(dir, "data")
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(adminToken+" ops admin\n"+aliceToken+" alice\n"), 0o600); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	dieWithParent(cmd)
	// Only the settings below: a STAGING_* variable of the caller's (a CI
	// job's, say) must not point the all-in-one elsewhere.
	var inherited []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STAGING_") {
			inherited = append(inherited, kv)
		}
	}
	cmd.Env = append(inherited,
		"STAGING_DATA_DIR="+server.dataDir,
		"STAGING_HTTP_ADDR=127.0.0.1:0",
		"STAGING_NATS_LISTEN=127.0.0.1:0",
		"STAGING_LOG_LEVEL=warn",
		"STAGING_AUTH_MODE=tokens",
		"STAGING_AUTH_TOKENS_FILE="+tokens,
	)
	logs := serverLog
	cmd.Stderr = logs
	banner, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	stop = func() {
		cancel()
		_ = cmd.Wait()
	}
	urls := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`skao-staging is running: (http://\S+)`)
		sc := bufio.NewScanner(banner)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	select {
	case server.url = <-urls:
	case <-time.After(60 * time.Second):
		stop()
		return nil, fmt.Errorf("stagingd printed no URL in 60 s; its log:\n%s", logs)
	}
	// /readyz answers before the audit takes queries (no responders for a
	// moment): wait for a listing too.
	ready := func() bool {
		for _, path := range []string{"/readyz", "/api/v1/stagings?limit=1"} {
			req, _ := http.NewRequest(http.MethodGet, server.url+path, nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	}
	if !await(30*time.Second, ready) {
		stop()
		return nil, fmt.Errorf("stagingd at %s not ready in 30 s; its log:\n%s", server.url, logs)
	}
	return stop, nil
}

// await polls cond until it holds or the timeout passes.
func await(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !await(timeout, cond) {
		t.Fatalf("%s: not within %s", what, timeout)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// result is one stagectl run.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// stagectl runs a command line in process against the test server as the
// admin; env entries override the environment it sees.
func stagectl(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	return stagectlIn(t, "", env, args...)
}

// stagectlIn is stagectl with stdin.
func stagectlIn(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	vars := map[string]string{"STAGING_URL": server.url, "STAGING_TOKEN": adminToken}
	for k, v := range env {
		vars[k] = v
	}
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), args, func(k string) string { return vars[k] }, strings.NewReader(stdin), &stdout, &stderr)
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// mustRun runs stagectl and fails the test unless it exits with want.
func mustRun(t *testing.T, want int, args ...string) result {
	t.Helper()
	r := stagectl(t, nil, args...)
	if r.code != want {
		t.Fatalf("stagectl %s: %s\nwant exit %d", strings.Join(args, " "), r, want)
	}
	return r
}

// pureJSON decodes stdout into v and fails unless stdout holds that one
// JSON document and nothing else.
func pureJSON(t *testing.T, stdout string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if _, err := dec.Token(); err != io.EOF {
		t.Fatalf("stdout holds more than one JSON document:\n%s", stdout)
	}
}

// sourceFile writes a file under the storage root and returns its path
// relative to the root.
func sourceFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	rel := filepath.Join(strings.ToLower(strings.NewReplacer("/", "_").Replace(t.Name())), name)
	p := filepath.Join(server.dataDir, "storage", rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return rel
}

// staged is the path of a target in a user's area.
func staged(user, target string) string {
	return filepath.Join(server.dataDir, "user_area", user, target)
}

// patterned is n bytes that differ from position to position, so a byte
// out of place shows.
func patterned(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

var users atomic.Int64

// newUser is a username of its own for each test run, so a test run again
// in the same process (-count) finds an empty user area and history.
func newUser(base string) string {
	return fmt.Sprintf("%s%d", base, users.Add(1))
}
