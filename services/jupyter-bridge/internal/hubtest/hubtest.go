// Package hubtest gives tests a real JupyterHub: the one named by
// STAGING_TEST_JUPYTERHUB_URL, _TOKEN and _USERS_DIR when set, otherwise
// one the package starts itself with scripts/jupyterhub-test/start.sh when
// the Debian jupyterhub package is installed (scripts/jupyterhub-test/
// install.sh). Without either, tests skip with a message, or fail when
// STAGING_REQUIRE_INTEGRATION=1.
//
// A test package shares one hub: call Get from tests and Stop from
// TestMain after m.Run.
package hubtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
)

// The variables naming an external hub.
const (
	EnvURL      = "STAGING_TEST_JUPYTERHUB_URL"
	EnvToken    = "STAGING_TEST_JUPYTERHUB_TOKEN"
	EnvUsersDir = "STAGING_TEST_JUPYTERHUB_USERS_DIR"
)

// MaxBodySize is the request body limit of the single-user servers of a
// hub this package starts: small enough that a test can exceed it cheaply.
const MaxBodySize = 48 << 20

// HTTPTimeout is the Spawner.http_timeout of a hub this package starts:
// how long a spawned server has to answer before its start counts as
// failed. Lower than the hub's 30 s default so a failing spawn is seen
// quickly, high enough for a start on a busy machine (1 to 3 s).
const HTTPTimeout = 8 * time.Second

// Hub is a running JupyterHub.
type Hub struct {
	URL   string
	Token string
	// UsersDir holds each user's notebook root: UsersDir/<name>/.
	UsersDir string
	// Own is true when this package started the hub (so its limits, such
	// as MaxBodySize, are known).
	Own bool
}

var shared struct {
	once    sync.Once
	hub     *Hub
	missing string
	err     error
	workdir string
	script  string
}

// Get returns the package's hub, starting it on first use.
func Get(t testing.TB) *Hub {
	t.Helper()
	shared.once.Do(start)
	switch {
	case shared.err != nil:
		t.Fatalf("start jupyterhub: %v", shared.err)
	case shared.missing != "":
		testenv.Missing(t, "%s", shared.missing)
	}
	return shared.hub
}

func start() {
	if u := os.Getenv(EnvURL); u != "" {
		tok, dir := os.Getenv(EnvToken), os.Getenv(EnvUsersDir)
		if tok == "" || dir == "" {
			shared.err = fmt.Errorf("%s is set but %s or %s is not", EnvURL, EnvToken, EnvUsersDir)
			return
		}
		shared.hub = &Hub{URL: u, Token: tok, UsersDir: dir}
		return
	}
	if _, err := os.Stat("/usr/bin/jupyterhub"); err != nil {
		shared.missing = fmt.Sprintf("no JupyterHub: set %s, %s and %s, or install one with scripts/jupyterhub-test/install.sh", EnvURL, EnvToken, EnvUsersDir)
		return
	}
	script, err := findScript("scripts/jupyterhub-test/start.sh")
	if err != nil {
		shared.err = err
		return
	}
	dir, err := os.MkdirTemp("", "jupyterhub-test-")
	if err != nil {
		shared.err = err
		return
	}
	shared.workdir, shared.script = dir, script
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", script, dir)
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("JHUB_MAX_BODY_SIZE=%d", MaxBodySize),
		fmt.Sprintf("JHUB_HTTP_TIMEOUT=%d", int(HTTPTimeout.Seconds())))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		shared.err = fmt.Errorf("%s: %w\n%s", script, err, stderr.String())
		return
	}
	vals := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	shared.hub = &Hub{URL: vals["URL"], Token: vals["TOKEN"], UsersDir: vals["USERS_DIR"], Own: true}
	if shared.hub.URL == "" || shared.hub.Token == "" || shared.hub.UsersDir == "" {
		shared.err = fmt.Errorf("%s printed no URL, TOKEN or USERS_DIR:\n%s", script, out)
	}
}

// findScript looks for rel in the working directory and its parents: tests
// run in their package's directory inside the repository.
func findScript(rel string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New(rel + " not found above the test's directory")
		}
		dir = parent
	}
}

// Stop stops the hub that Get started, if any. With failed set it first
// prints the end of the hub's log.
func Stop(failed bool) {
	if shared.workdir == "" {
		return
	}
	logFile := filepath.Join(shared.workdir, "jupyterhub.log")
	if failed {
		if data, err := os.ReadFile(logFile); err == nil {
			lines := strings.Split(string(data), "\n")
			fmt.Fprintf(os.Stderr, "--- last lines of %s ---\n%s\n", logFile, strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	}
	stop := filepath.Join(filepath.Dir(shared.script), "stop.sh")
	if out, err := exec.Command("bash", stop, shared.workdir).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "stop jupyterhub: %v\n%s", err, out)
		return
	}
	if err := os.RemoveAll(shared.workdir); err != nil {
		fmt.Fprintf(os.Stderr, "remove %s: %v\n", shared.workdir, err)
	}
}

// Main runs the tests of a package that uses Get and stops the hub after
// them. Call it from TestMain: os.Exit(hubtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	Stop(code != 0)
	return code
}

// Client returns a hub client with the hub's service token.
func (h *Hub) Client(t testing.TB, chunkSize int64) *hubclient.Client {
	t.Helper()
	c, err := hubclient.New(hubclient.Options{URL: h.URL, Token: h.Token, ChunkSize: chunkSize})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// NewUser creates a user with a fresh name on the hub. Its server is
// stopped when the test ends.
func (h *Hub) NewUser(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "u" + hex.EncodeToString(b)
	c := h.Client(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.CreateUser(ctx, name); err != nil {
		t.Fatalf("create hub user %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.StopServer(ctx, name); err != nil {
			t.Errorf("stop server of %s: %v", name, err)
		}
	})
	return name
}

// UserPath is where path p of user's Contents API lands on disk.
func (h *Hub) UserPath(user, p string) string {
	return filepath.Join(h.UsersDir, user, filepath.FromSlash(p))
}

// UserToken mints an API token of user name's own (it expires after an
// hour), as a user gets from the hub's token page. The service token needs
// the tokens scope for it (scripts/jupyterhub-test/jupyterhub_config.py).
func (h *Hub) UserToken(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	body := strings.NewReader(`{"note":"skao-staging test","expires_in":3600}`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/hub/api/users/"+url.PathEscape(name)+"/tokens", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "token "+h.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("mint a token for %s: %v", name, err)
	}
	defer resp.Body.Close()
	var tok struct {
		Token   string `json:"token"`
		Message string `json:"message"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatalf("mint a token for %s: %d, undecodable answer: %v", name, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusCreated || tok.Token == "" {
		t.Fatalf("mint a token for %s: %d %s (does the service token hold the tokens scope?)", name, resp.StatusCode, tok.Message)
	}
	return tok.Token
}

// Outage is a TCP forwarder in front of the hub that can be taken down and
// brought back, so a test sees the hub become unreachable (connections
// refused) and then answer again on the same URL.
type Outage struct {
	// URL is the hub's URL through the forwarder.
	URL    string
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

// Outage returns a forwarder to the hub, down until Up is called. It is
// closed when the test ends.
func (h *Hub) Outage(t testing.TB) *Outage {
	t.Helper()
	u, err := url.Parse(h.URL)
	if err != nil {
		t.Fatal(err)
	}
	// Reserve a port: after Close nothing listens there, which is what a
	// client of a stopped hub meets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	o := &Outage{addr: addr, target: u.Host, conns: map[net.Conn]struct{}{}}
	pu := *u
	pu.Host = addr
	o.URL = pu.String()
	t.Cleanup(o.Down)
	return o
}

// Up starts forwarding connections to the hub.
func (o *Outage) Up(t testing.TB) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln != nil {
		return
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		t.Fatalf("hub forwarder on %s: %v", o.addr, err)
	}
	o.ln = ln
	go o.accept(ln)
}

// Down closes the listener and every forwarded connection.
func (o *Outage) Down() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln != nil {
		o.ln.Close()
		o.ln = nil
	}
	for c := range o.conns {
		c.Close()
		delete(o.conns, c)
	}
}

func (o *Outage) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go o.forward(c)
	}
}

func (o *Outage) track(cs ...net.Conn) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ln == nil {
		return false
	}
	for _, c := range cs {
		o.conns[c] = struct{}{}
	}
	return true
}

func (o *Outage) forward(c net.Conn) {
	defer c.Close()
	up, err := net.Dial("tcp", o.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !o.track(c, up) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	<-done
	<-done
	o.mu.Lock()
	delete(o.conns, c)
	delete(o.conns, up)
	o.mu.Unlock()
}

// FileSHA256 is the SHA-256 of the file at p, to compare what landed in a
// user's directory with what was uploaded.
func FileSHA256(t testing.TB, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
