package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// eventProxy stands between stagectl and the server's event streams and
// passes other requests through. It can cut a stream after its first event
// and hold a request's terminal event back until released.
type eventProxy struct {
	*httptest.Server
	cutFirst bool          // cut the first stream after one event
	release  chan struct{} // when set, terminal events wait for it

	mu           sync.Mutex
	streams      int
	lastEventIDs []string // the Last-Event-ID of each stream request
	firstIDs     []string // the id of the first event of each stream
	held         int      // streams waiting for release at their terminal event
	midway       bool     // a progress event short of the total was passed
}

func newEventProxy(t *testing.T, cutFirst bool, release chan struct{}) *eventProxy {
	p := &eventProxy{cutFirst: cutFirst, release: release}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *eventProxy) serve(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, server.url+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if !strings.HasSuffix(r.URL.Path, "/events") || resp.StatusCode != http.StatusOK {
		io.Copy(w, resp.Body)
		return
	}
	p.mu.Lock()
	p.streams++
	cut := p.cutFirst && p.streams == 1
	p.lastEventIDs = append(p.lastEventIDs, r.Header.Get("Last-Event-ID"))
	p.mu.Unlock()

	// Frame by frame, so a frame can be held back or the stream cut
	// between two.
	rc := http.NewResponseController(w)
	br := bufio.NewReader(resp.Body)
	var frame bytes.Buffer
	first := true
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		frame.WriteString(line)
		if line != "\n" {
			continue
		}
		f := frame.String()
		frame.Reset()
		if id, ok := strings.CutPrefix(firstLine(f, "id: "), "id: "); ok && first {
			first = false
			p.mu.Lock()
			p.firstIDs = append(p.firstIDs, id)
			p.mu.Unlock()
		}
		if p.release != nil && (strings.Contains(f, "event: succeeded") || strings.Contains(f, "event: failed")) {
			p.mu.Lock()
			p.held++
			p.mu.Unlock()
			select {
			case <-p.release:
			case <-r.Context().Done():
				return
			}
		}
		if m := progressed.FindStringSubmatch(f); m != nil && m[1] != "0" && m[1] != m[2] {
			p.mu.Lock()
			p.midway = true
			p.mu.Unlock()
		}
		io.WriteString(w, f)
		rc.Flush()
		if cut && strings.Contains(f, "\nevent: ") {
			// Drop the connection mid-stream, as a proxy timing out would.
			panic(http.ErrAbortHandler)
		}
	}
}

var progressed = regexp.MustCompile(`"bytes_done":(\d+),"bytes_total":(\d+)`)

func firstLine(frame, prefix string) string {
	for _, l := range strings.Split(frame, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestWatchResumesAfterTheStreamDrops: the first event stream is cut after
// one event; stagectl reconnects with that event's id as Last-Event-ID and
// follows the request to its end.
func TestWatchResumesAfterTheStreamDrops(t *testing.T) {
	judy := newUser("judy")
	a := sourceFile(t, "tree/a.bin", patterned(64<<10))
	sourceFile(t, "tree/b.bin", patterned(32<<10))
	id := strings.TrimSpace(mustRun(t, exitOK, "stage", "local_copy", path.Dir(a), "resume/tree", "--user", judy).stdout)

	p := newEventProxy(t, true, nil)
	r := stagectl(t, map[string]string{"STAGING_URL": p.URL}, "watch", id, "--json")
	if r.code != exitOK {
		t.Fatalf("watch through a dropped stream: %s", r)
	}
	var states []staging
	pureJSON(t, r.stdout, &states)
	if len(states) != 1 || states[0].Status != "succeeded" || states[0].Files != 2 {
		t.Errorf("final state %+v, want succeeded with 2 files", states)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.streams != 2 || len(p.firstIDs) != 2 {
		t.Fatalf("%d streams opened (first ids %q), want 2: the cut one and its resumption", p.streams, p.firstIDs)
	}
	if p.lastEventIDs[0] != "" || p.lastEventIDs[1] != p.firstIDs[0] {
		t.Errorf("Last-Event-ID sent %q, want none then %q (the one event received)", p.lastEventIDs, p.firstIDs[0])
	}
	if p.firstIDs[1] == p.firstIDs[0] {
		t.Errorf("the resumed stream started again at event %s", p.firstIDs[1])
	}
}

var percentage = regexp.MustCompile(`(\d+) %`)

// ansi matches the terminal control sequences the bars are drawn with.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// TestWatchDrawsBarsOnATerminal runs watch under a pseudo-terminal. The
// proxy holds the requests' terminal events back until a bar with a
// percentage has been drawn, then lets them through: the bars must end at
// 100 %, with a total line for the two requests. (A copy may report 100 %
// before it ends: the data is written, the rename not yet done.)
func TestWatchDrawsBarsOnATerminal(t *testing.T) {
	kim := newUser("kim")
	src := sourceFile(t, "big.bin", patterned(64<<20))
	var ids []string
	for _, target := range []string{"pty/a.bin", "pty/b.bin"} {
		r := mustRun(t, exitOK, "stage", "local_copy", src, target, "--user", kim)
		ids = append(ids, strings.TrimSpace(r.stdout))
	}
	p := newEventProxy(t, false, make(chan struct{}))
	released := false
	defer func() {
		if !released {
			close(p.release)
		}
	}()

	cmd := exec.Command(server.stagectlBin, append([]string{"watch", "--server", p.URL, "--token", adminToken}, ids...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm", "STAGING_URL=", "STAGING_TOKEN=")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 140})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	out := &lockedBuffer{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(out, tty) // ends with EIO once the process has exited
	}()
	screen := func() string { return ansi.ReplaceAllString(out.String(), "") }

	// Every event but the last has passed once both streams are held.
	eventually(t, 20*time.Second, "both streams at their last event", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.held == 2
	})
	p.mu.Lock()
	midway := p.midway
	p.mu.Unlock()
	t.Logf("a progress event short of the total passed: %v", midway)
	// A progress event comes only from a copy slower than the stager's
	// sampling, which a test cannot force; when one passed, its percentage
	// must show.
	drawn := func() bool {
		for _, m := range percentage.FindAllStringSubmatch(screen(), -1) {
			if !midway || (m[1] != "0" && m[1] != "100") {
				return true
			}
		}
		return false
	}
	eventually(t, 20*time.Second, "a bar with a percentage", drawn)
	close(p.release)
	released = true
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("watch: %v\n%s", err, screen())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("watch did not end:\n%s", screen())
	}
	<-copied
	s := screen()
	all := percentage.FindAllStringSubmatch(s, -1)
	if last := all[len(all)-1][1]; last != "100" {
		t.Errorf("the last percentage drawn is %s %%, want 100 %%:\n%s", last, s)
	}
	for _, want := range []string{"total", "2/2 done", "[", "]", ids[0] + " succeeded (staged)", ids[1] + " succeeded (staged)"} {
		if !strings.Contains(s, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, s)
		}
	}
}

// TestWatchOnASizelessTerminal: a pseudo-terminal without a size (as
// script(1) makes) would show no bars at all, so stagectl prints lines.
func TestWatchOnASizelessTerminal(t *testing.T) {
	user := newUser("noel")
	src := sourceFile(t, "s.txt", []byte("sizeless\n"))
	id := strings.TrimSpace(mustRun(t, exitOK, "stage", "local_copy", src, "s.txt", "--user", user).stdout)
	cmd := exec.Command(server.stagectlBin, "watch", "--server", server.url, "--token", adminToken, id)
	cmd.Env = append(os.Environ(), "TERM=xterm")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	out := &lockedBuffer{}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(out, tty)
	}()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch: %v\n%s", err, out)
	}
	<-copied
	if s := out.String(); !strings.Contains(s, id+" succeeded (staged)") || strings.Contains(s, "[") {
		t.Errorf("on a sizeless terminal: %q, want state lines and no bar", s)
	}
}
