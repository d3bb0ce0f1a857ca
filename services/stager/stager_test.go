package stager_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
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

// downloadHandler serves the download links of s as a process that mounts
// the handler on a listener of its own does (NewDownloadHandler), its
// metrics on reg. It is closed when the test ends, after the servers the
// test started meanwhile.
func (s *system) downloadHandler(t *testing.T, reg prometheus.Registerer) http.Handler {
	t.Helper()
	deps := s.deps
	deps.Registerer = reg
	h, closeH, err := stager.NewDownloadHandler(t.Context(), s.cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeH() })
	return h
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
