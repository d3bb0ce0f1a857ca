package stager_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager"
)

// system is a stager running against an embedded NATS server, with a
// storage and a user area in temporary directories.
type system struct {
	js       jetstream.JetStream
	deps     service.Deps
	cfg      stager.Config
	storage  string
	userArea string
}

func startStager(t *testing.T, edit func(*stager.Config)) *system {
	t.Helper()
	nc, js := natstest.JetStream(t)
	dir := t.TempDir()
	s := &system{js: js, storage: filepath.Join(dir, "storage_a"), userArea: filepath.Join(dir, "users")}
	for _, d := range []string{s.storage, s.userArea} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { makeRemovable(t, s.userArea) })
	s.cfg = stager.Config{
		SourceRoot:     s.storage,
		UserAreaRoot:   s.userArea,
		AllowedMethods: []string{"local_copy", "local_symlink", "local_hardlink", "direct_download"},
		Concurrency:    2,
		CopyWorkers:    2,
		AckWait:        5 * time.Second,
		MaxDeliver:     3,
		StageTimeout:   time.Minute,
		DownloadTTL:    time.Hour,
		ShutdownGrace:  time.Second,
	}
	if edit != nil {
		edit(&s.cfg)
	}
	s.deps = service.Deps{
		Log:        slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		NC:         nc,
		JS:         js,
		Registerer: prometheus.NewRegistry(),
		Tracer:     sdktrace.NewTracerProvider(),
		Health:     telemetry.NewHealth(),
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stager.Run(runCtx, s.cfg, s.deps) }()
	// The consumer is declared once the roots are open.
	testenv.Eventually(t, 10*time.Second, "the stager's consumer", func() bool {
		_, err := js.Consumer(context.Background(), contract.StreamRequests, contract.ConsumerStager)
		return err == nil
	})
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s
}

// makeRemovable restores write permission on the read-only results, so the
// temporary directory can be removed by a user other than root.
func makeRemovable(t testing.TB, dir string) {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	})
	if err != nil {
		t.Logf("restore permissions: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func (s *system) write(t *testing.T, rel, content string) {
	t.Helper()
	p := filepath.Join(s.storage, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *system) submit(t *testing.T, method contract.Method, src, rel string) string {
	t.Helper()
	return s.submitAs(t, "alice", method, src, rel)
}

// submitAs publishes a command of user's.
func (s *system) submitAs(t *testing.T, user string, method contract.Method, src, rel string) string {
	t.Helper()
	cmd := contract.Command{
		SpecVersion:        contract.SpecVersion,
		ID:                 uuid.NewString(),
		Method:             method,
		Username:           user,
		LocalPathOnStorage: src,
		RelativePath:       rel,
		Origin:             "test",
		RequestedAt:        time.Now().UTC(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.PublishCommand(ctx, s.js, cmd); err != nil {
		t.Fatal(err)
	}
	return cmd.ID
}

// events reads the events on subject until a terminal one. (The worker's
// tests check the events against the schema.)
func (s *system) events(t *testing.T, subject string) []contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := s.js.OrderedConsumer(ctx, contract.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var evs []contract.Event
	for {
		msg, err := c.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for events on %s (got %d so far: %+v): %v", subject, len(evs), evs, err)
		}
		var ev contract.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		if ev.Type.Terminal() {
			return evs
		}
	}
}

// summary keeps the fields of an event a test compares.
type summary struct {
	Type    contract.EventType
	Outcome contract.Outcome
	Code    contract.Code
	Bytes   int64
	Files   int64
}

func summarize(evs []contract.Event) []summary {
	var out []summary
	for _, ev := range evs {
		if ev.Type == contract.EventProgress {
			continue
		}
		s := summary{Type: ev.Type, Outcome: ev.Outcome, Bytes: ev.Bytes, Files: ev.Files}
		if ev.Error != nil {
			s.Code = ev.Error.Code
		}
		out = append(out, s)
	}
	return out
}

func TestLocalCopyThroughNATS(t *testing.T) {
	s := startStager(t, nil)
	s.write(t, "obs/x.fits", "hello, sky")
	id := s.submit(t, contract.MethodLocalCopy, filepath.Join(s.storage, "obs/x.fits"), "data/x.fits")
	evs := s.events(t, contract.EventSubject(id))
	want := []summary{{Type: contract.EventStarted}, {Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 10, Files: 1}}
	if diff := cmp.Diff(summarize(evs), want); diff != "" {
		t.Fatalf("events (-got +want):\n%s", diff)
	}
	last := evs[len(evs)-1]
	if got, want := last.Message, "staged 1 file (10 bytes) to alice/data/x.fits"; got != want {
		t.Errorf("message = %q, want %q", got, want)
	}
	for _, ev := range evs {
		if ev.Source != "stager" || ev.RequestID != id || ev.Attempt != 1 || ev.TraceID == "" || ev.Username != "alice" {
			t.Errorf("event %s lacks request fields: %+v", ev.Type, ev)
		}
	}
	target := filepath.Join(s.userArea, "alice/data/x.fits")
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello, sky" {
		t.Errorf("staged content = %q", got)
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o400 {
		t.Errorf("staged file mode = %v, want 0400", fi.Mode().Perm())
	}

	// The same item again: already present, nothing touched.
	id = s.submit(t, contract.MethodLocalCopy, "obs/x.fits", "data/x.fits")
	evs = s.events(t, contract.EventSubject(id))
	want = []summary{{Type: contract.EventStarted}, {Type: contract.EventSucceeded, Outcome: contract.OutcomeAlreadyPresent}}
	if diff := cmp.Diff(summarize(evs), want); diff != "" {
		t.Fatalf("second request events (-got +want):\n%s", diff)
	}
}

// The stager's verdicts on a source end the request at once: one
// delivery, started then failed with the code (the worker's tests cover
// how a failure is recorded).
func TestSourceFailures(t *testing.T) {
	s := startStager(t, nil)
	s.write(t, "obs/x.fits", "x")
	if err := os.Symlink("/etc/passwd", filepath.Join(s.storage, "obs/escape")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		src  string
		want contract.Code
	}{
		{"missing source", "obs/none.fits", contract.CodeSourceNotFound},
		{"outside the storage", "/etc/passwd", contract.CodeOutsideStorage},
		{"symlink out of the storage", "obs/escape", contract.CodeOutsideStorage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := s.submit(t, contract.MethodLocalCopy, tt.src, "data/"+tt.name)
			got := summarize(s.events(t, contract.EventSubject(id)))
			want := []summary{{Type: contract.EventStarted}, {Type: contract.EventFailed, Code: tt.want}}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
		})
	}
}

// The stager's verdicts on a target end the request at first delivery
// too: a name the filesystem refuses is the request's fault, and a user's
// area that is a symbolic link to another user's is refused, for every
// method.
func TestTargetFailures(t *testing.T) {
	s := startStager(t, nil)
	s.write(t, "obs/x.fits", "x")
	if err := os.Mkdir(filepath.Join(s.userArea, "bob"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("bob", filepath.Join(s.userArea, "victor")); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 300)
	tests := []struct {
		name     string
		user     string
		src, rel string
		want     contract.Code
	}{
		{"target name too long", "alice", "obs/x.fits", "data/" + long, contract.CodeInvalidPath},
		{"source name too long", "alice", "obs/" + long, "data/x", contract.CodeInvalidPath},
		{"user area is a symlink", "victor", "obs/x.fits", "x.fits", contract.CodeOutsideUserArea},
	}
	for _, tt := range tests {
		for _, method := range []contract.Method{contract.MethodLocalCopy, contract.MethodLocalSymlink, contract.MethodLocalHardlink} {
			t.Run(tt.name+"/"+string(method), func(t *testing.T) {
				id := s.submitAs(t, tt.user, method, tt.src, tt.rel)
				got := summarize(s.events(t, contract.EventSubject(id)))
				want := []summary{{Type: contract.EventStarted}, {Type: contract.EventFailed, Code: tt.want}}
				if diff := cmp.Diff(got, want); diff != "" {
					t.Errorf("events (-got +want):\n%s", diff)
				}
			})
		}
	}
	if entries, err := os.ReadDir(filepath.Join(s.userArea, "bob")); err != nil || len(entries) != 0 {
		t.Errorf("bob's area: got %v, %v; want it empty", entries, err)
	}
}

func TestDirectDownload(t *testing.T) {
	forEachDownloadPath(t, testDirectDownload)
}

// forEachDownloadPath runs test once with files served through sendfile
// (the default) and once through the buffered copy.
func forEachDownloadPath(t *testing.T, test func(t *testing.T, edit func(*stager.Config))) {
	for _, sendfile := range []bool{true, false} {
		name := map[bool]string{true: "sendfile", false: "buffered"}[sendfile]
		t.Run(name, func(t *testing.T) {
			test(t, func(c *stager.Config) { c.DownloadSendfile = sendfile })
		})
	}
}

func testDirectDownload(t *testing.T, edit func(*stager.Config)) {
	s := startStager(t, edit)
	content := bytes.Repeat([]byte("0123456789"), 1000)
	s.write(t, "obs/big.ms", string(content))
	id := s.submit(t, contract.MethodDirectDownload, "obs/big.ms", "big.ms")
	evs := s.events(t, contract.EventSubject(id))
	last := evs[len(evs)-1]
	if last.Type != contract.EventSucceeded || last.Outcome != contract.OutcomeLinkIssued || last.DownloadURL == "" {
		t.Fatalf("last event = %+v, want succeeded with a download link", last)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := s.cfg
	deps := s.deps
	deps.Registerer = prometheus.NewRegistry()
	h, closeH, err := stager.NewDownloadHandler(ctx, cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer closeH()
	srv := httptest.NewServer(h)
	defer srv.Close()
	fi, err := os.Stat(filepath.Join(s.storage, "obs/big.ms"))
	if err != nil {
		t.Fatal(err)
	}
	modTime := fi.ModTime().UTC().Format(http.TimeFormat)

	tests := []struct {
		name       string
		path       string
		method     string
		rangeHdr   string
		ifRange    string
		wantStatus int
		wantBody   []byte
	}{
		{"whole file", last.DownloadURL, http.MethodGet, "", "", http.StatusOK, content},
		{"range", last.DownloadURL, http.MethodGet, "bytes=100-109", "", http.StatusPartialContent, content[100:110]},
		{"resume", last.DownloadURL, http.MethodGet, "bytes=9990-", "", http.StatusPartialContent, content[9990:]},
		{"resume of a changed file", last.DownloadURL, http.MethodGet, "bytes=9990-", "Mon, 02 Jan 2006 15:04:05 GMT", http.StatusOK, content},
		{"resume of the same file", last.DownloadURL, http.MethodGet, "bytes=9990-", modTime, http.StatusPartialContent, content[9990:]},
		{"head", last.DownloadURL, http.MethodHead, "", "", http.StatusOK, nil},
		{"unknown token", "/api/v1/downloads/" + string(bytes.Repeat([]byte("A"), 43)), http.MethodGet, "", "", http.StatusNotFound, nil},
		{"malformed token", "/api/v1/downloads/x", http.MethodGet, "", "", http.StatusNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.rangeHdr != "" {
				req.Header.Set("Range", tt.rangeHdr)
			}
			if tt.ifRange != "" {
				req.Header.Set("If-Range", tt.ifRange)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == http.StatusNotFound {
				var e contract.Error
				if err := json.Unmarshal(body, &e); err != nil || e.Code != contract.CodeNotFound {
					t.Errorf("body = %s, want a not_found error", body)
				}
				return
			}
			if !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body has %d bytes, want %d", len(body), len(tt.wantBody))
			}
			if got, want := resp.Header.Get("Content-Disposition"), `attachment; filename=big.ms`; got != want {
				t.Errorf("Content-Disposition = %q, want %q", got, want)
			}
			if tt.method == http.MethodHead && resp.ContentLength != int64(len(content)) {
				t.Errorf("HEAD Content-Length = %d, want %d", resp.ContentLength, len(content))
			}
		})
	}
}

func TestTreeCopyAndLinks(t *testing.T) {
	s := startStager(t, nil)
	s.write(t, "run/a.txt", "a")
	s.write(t, "run/sub/b.txt", "bb")
	tests := []struct {
		method contract.Method
		src    string
		rel    string
		want   summary
	}{
		{contract.MethodLocalCopy, "run", "copy/run", summary{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 3, Files: 2}},
		{contract.MethodLocalSymlink, "run", "links/run", summary{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged}},
		{contract.MethodLocalHardlink, "run/a.txt", "links/a.txt", summary{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 1, Files: 1}},
		{contract.MethodLocalHardlink, "run", "links/dir", summary{Type: contract.EventFailed, Code: contract.CodeInvalidPath}},
	}
	for _, tt := range tests {
		t.Run(string(tt.method)+" "+tt.rel, func(t *testing.T) {
			id := s.submit(t, tt.method, tt.src, tt.rel)
			got := summarize(s.events(t, contract.EventSubject(id)))
			if diff := cmp.Diff(got[len(got)-1], tt.want); diff != "" {
				t.Errorf("outcome (-got +want):\n%s", diff)
			}
		})
	}
	b, err := os.ReadFile(filepath.Join(s.userArea, "alice/copy/run/sub/b.txt"))
	if err != nil || string(b) != "bb" {
		t.Errorf("copied tree file = %q, %v", b, err)
	}
	dest, err := os.Readlink(filepath.Join(s.userArea, "alice/links/run"))
	if err != nil || dest != filepath.Join(s.storage, "run") {
		t.Errorf("symlink = %q, %v", dest, err)
	}
}

// An I/O fault in the user area is no verdict on the request: the stager
// leaves it to the retries, which end in retries_exhausted.
func TestTransientFailureExhaustsRetries(t *testing.T) {
	s := startStager(t, func(c *stager.Config) { c.MaxDeliver = 2 })
	s.write(t, "obs/x.fits", "x")
	// The stager holds the user area open; removing the directory makes
	// every write in it fail with an I/O error that is not a verdict on
	// the request.
	if err := os.RemoveAll(s.userArea); err != nil {
		t.Fatal(err)
	}
	id := s.submit(t, contract.MethodLocalCopy, "obs/x.fits", "x.fits")
	evs := s.events(t, contract.EventSubject(id))
	want := []summary{{Type: contract.EventStarted}, {Type: contract.EventStarted}, {Type: contract.EventFailed, Code: contract.CodeRetriesExhausted}}
	if diff := cmp.Diff(summarize(evs), want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

func TestDirectDownloadOfDirectory(t *testing.T) {
	s := startStager(t, nil)
	s.write(t, "run/a.txt", "a")
	s.write(t, "run/sub/b.txt", "bb")
	id := s.submit(t, contract.MethodDirectDownload, "run", "run")
	evs := s.events(t, contract.EventSubject(id))
	last := evs[len(evs)-1]
	if last.Outcome != contract.OutcomeLinkIssued {
		t.Fatalf("last event = %+v", last)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deps := s.deps
	deps.Registerer = prometheus.NewRegistry()
	h, closeH, err := stager.NewDownloadHandler(ctx, s.cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	defer closeH()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + last.DownloadURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got []string
	tr := tar.NewReader(resp.Body)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr.Name+" "+string(b))
	}
	want := []string{"run/ ", "run/a.txt a", "run/sub/ ", "run/sub/b.txt bb"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("archive (-got +want):\n%s", diff)
	}
}
