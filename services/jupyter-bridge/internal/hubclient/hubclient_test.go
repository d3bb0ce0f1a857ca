package hubclient_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
)

func TestMain(m *testing.M) { os.Exit(hubtest.Main(m)) }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// running returns a client and a user whose server is up.
func running(t *testing.T, hub *hubtest.Hub, chunkSize int64) (*hubclient.Client, string) {
	t.Helper()
	c := hub.Client(t, chunkSize)
	user := hub.NewUser(t)
	if _, err := c.EnsureRunning(testContext(t), user, time.Minute, nil); err != nil {
		t.Fatalf("EnsureRunning: %v", err)
	}
	return c, user
}

// randomFile writes size pseudo-random bytes to a new file and returns it
// opened, with the data's sha256.
func randomFile(t *testing.T, size int64) (*os.File, [32]byte) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "src.bin"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	h := sha256.New()
	rng := rand.NewChaCha8([32]byte{byte(size), byte(size >> 8), byte(size >> 16)})
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rng, size)); err != nil {
		t.Fatal(err)
	}
	return f, [32]byte(h.Sum(nil))
}

// dirNames lists a directory on disk, hidden entries left out (the
// single-user server keeps .local in the notebook root).
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestEnsureRunningStartsStoppedServer(t *testing.T) {
	hub := hubtest.Get(t)
	c := hub.Client(t, 0)
	user := hub.NewUser(t)
	ctx := testContext(t)

	u, err := c.GetUser(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := u.DefaultServer(); ok {
		t.Fatalf("new user %s already has a server: %+v", user, u.Servers)
	}
	var events []hubclient.Progress
	started, err := c.EnsureRunning(ctx, user, time.Minute, func(p hubclient.Progress) { events = append(events, p) })
	if err != nil {
		t.Fatalf("EnsureRunning: %v", err)
	}
	if !started {
		t.Error("EnsureRunning reported the stopped server as running")
	}
	if len(events) == 0 || !events[len(events)-1].Ready {
		t.Errorf("progress events = %+v, want the last one ready", events)
	}
	u, err = c.GetUser(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := u.DefaultServer(); !ok || !s.Ready {
		t.Errorf("after EnsureRunning the server is %+v (exists %v), want ready", s, ok)
	}
	started, err = c.EnsureRunning(ctx, user, time.Minute, nil)
	if err != nil || started {
		t.Errorf("EnsureRunning on a running server = %v, %v; want false, nil", started, err)
	}
}

func TestUpload(t *testing.T) {
	hub := hubtest.Get(t)
	const chunk = 1 << 20
	c, user := running(t, hub, chunk)
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	tests := []struct {
		name   string
		target string
		data   []byte
	}{
		{"text", "hello.txt", []byte("hello from the staging service\n")},
		{"binary", "bytes.bin", bytes.Repeat(allBytes, 100)},
		{"empty", "empty.dat", nil},
		{"exactly one chunk", "one.bin", bytes.Repeat([]byte{0xff, 0, 'x'}, chunk/3+1)[:chunk]},
		{"several chunks", "multi.bin", bytes.Repeat(allBytes, 3*chunk/256+77)},
		{"spaces and UTF-8", "sp ace é+%?#.txt", []byte("encoded\n")},
		{"in a subdirectory", "sub/deeper/x.bin", allBytes},
	}
	ctx := testContext(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.ToSlash(filepath.Dir(tt.target))
			if dir != "." {
				if err := c.MkdirAll(ctx, user, dir); err != nil {
					t.Fatalf("MkdirAll(%s): %v", dir, err)
				}
			}
			var sent []int64
			err := c.Upload(ctx, user, tt.target, bytes.NewReader(tt.data), int64(len(tt.data)), func(n int64) { sent = append(sent, n) })
			if err != nil {
				t.Fatalf("Upload: %v", err)
			}
			got, err := os.ReadFile(hub.UserPath(user, tt.target))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("file on disk has %d bytes differing from the %d sent", len(got), len(tt.data))
			}
			if len(sent) == 0 || sent[len(sent)-1] != int64(len(tt.data)) {
				t.Errorf("progress = %v, want it to end at %d", sent, len(tt.data))
			}
		})
	}
	// Nothing but the targets is left: no temporary files.
	want := []string{"bytes.bin", "empty.dat", "hello.txt", "multi.bin", "one.bin", "sp ace é+%?#.txt", "sub"}
	if diff := cmp.Diff(dirNames(t, hub.UserPath(user, "")), want); diff != "" {
		t.Errorf("notebook root (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(dirNames(t, hub.UserPath(user, "sub/deeper")), []string{"x.bin"}); diff != "" {
		t.Errorf("sub/deeper (-got +want):\n%s", diff)
	}
}

// A 200 MiB file goes up in 16 MiB chunks with the bytes intact, and the
// client's memory does not grow with the file or the chunk size.
func TestUploadLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB upload skipped in -short mode")
	}
	hub := hubtest.Get(t)
	const chunk = 16 << 20
	c, user := running(t, hub, chunk)
	const size = 200 << 20
	src, sum := randomFile(t, size)

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	if err := c.Upload(testContext(t), user, "big.bin", src, size, nil); err != nil {
		t.Fatalf("Upload: %v", err)
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	t.Logf("200 MiB in %s: %.1f MiB/s", elapsed.Round(time.Millisecond), size/(1<<20)/elapsed.Seconds())

	if got := hubtest.FileSHA256(t, hub.UserPath(user, "big.bin")); got != sum {
		t.Errorf("sha256 on disk = %x, want %x", got, sum)
	}
	// Everything allocated during the upload, not just what was live at
	// once: a bound on this bounds the peak too.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > chunk {
		t.Errorf("upload allocated %d MiB, want under one chunk (%d MiB)", alloc>>20, chunk>>20)
	}
}

func TestUploadRefusesExistingTarget(t *testing.T) {
	hub := hubtest.Get(t)
	c, user := running(t, hub, 0)
	ctx := testContext(t)
	if err := c.Upload(ctx, user, "keep.txt", strings.NewReader("original"), 8, nil); err != nil {
		t.Fatal(err)
	}
	err := c.Upload(ctx, user, "keep.txt", strings.NewReader("replacement"), 11, nil)
	if got := contract.CodeOf(err); got != contract.CodeTargetConflict {
		t.Errorf("second Upload code = %q (%v), want %q", got, err, contract.CodeTargetConflict)
	}
	got, err := os.ReadFile(hub.UserPath(user, "keep.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "original" {
		t.Errorf("existing file now holds %q", got)
	}
	if diff := cmp.Diff(dirNames(t, hub.UserPath(user, "")), []string{"keep.txt"}); diff != "" {
		t.Errorf("notebook root (-got +want):\n%s", diff)
	}
	ok, err := c.Exists(ctx, user, "keep.txt")
	if err != nil || !ok {
		t.Errorf("Exists(keep.txt) = %v, %v; want true", ok, err)
	}
	ok, err = c.Exists(ctx, user, "no/such.txt")
	if err != nil || ok {
		t.Errorf("Exists(no/such.txt) = %v, %v; want false", ok, err)
	}
}

func TestErrorCodes(t *testing.T) {
	hub := hubtest.Get(t)
	good, user := running(t, hub, 0)
	bad := good.WithToken("not-the-token-at-all")
	// A user whose notebook directory is a file: its server cannot start.
	broken := hub.NewUser(t)
	if err := os.WriteFile(hub.UserPath(broken, ""), []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func(ctx context.Context) error
		want contract.Code
	}{
		{"unknown user", func(ctx context.Context) error {
			_, err := good.GetUser(ctx, "nobody-here")
			return err
		}, hubclient.CodeUserNotFound},
		{"unknown user start", func(ctx context.Context) error {
			_, err := good.EnsureRunning(ctx, "nobody-here", time.Minute, nil)
			return err
		}, hubclient.CodeUserNotFound},
		{"wrong token on the hub", func(ctx context.Context) error {
			_, err := bad.GetUser(ctx, user)
			return err
		}, hubclient.CodeForbidden},
		{"wrong token on the server", func(ctx context.Context) error {
			return bad.Upload(ctx, user, "x.txt", strings.NewReader("x"), 1, nil)
		}, hubclient.CodeForbidden},
		{"wrong token stat", func(ctx context.Context) error {
			_, err := bad.Exists(ctx, user, "x.txt")
			return err
		}, hubclient.CodeForbidden},
		{"spawn fails", func(ctx context.Context) error {
			_, err := good.EnsureRunning(ctx, broken, time.Minute, nil)
			return err
		}, hubclient.CodeSpawnFailed},
		{"hub unreachable", func(ctx context.Context) error {
			c, err := hubclient.New(hubclient.Options{URL: "http://127.0.0.1:1", Token: "whatever-token"})
			if err != nil {
				return err
			}
			_, err = c.GetUser(ctx, user)
			return err
		}, hubclient.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(testContext(t))
			if got := contract.CodeOf(err); got != tt.want {
				t.Errorf("code = %q (%v), want %q", got, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), hub.Token) {
				t.Errorf("error reveals the token: %v", err)
			}
		})
	}
}

func TestUploadToStoppedServer(t *testing.T) {
	hub := hubtest.Get(t)
	c, user := running(t, hub, 0)
	ctx := testContext(t)
	if err := c.StopServer(ctx, user); err != nil {
		t.Fatal(err)
	}
	// The hub may take a moment to stop it; until then uploads still work.
	testenv.Eventually(t, 30*time.Second, "the server to stop", func() bool {
		u, err := c.GetUser(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		_, running := u.DefaultServer()
		return !running
	})
	err := c.Upload(ctx, user, "x.txt", strings.NewReader("x"), 1, nil)
	if !errors.Is(err, hubclient.ErrServerNotRunning) || !hubclient.Retryable(err) {
		t.Errorf("Upload to a stopped server = %v, want ErrServerNotRunning", err)
	}
	if _, err := c.Exists(ctx, user, "x.txt"); !errors.Is(err, hubclient.ErrServerNotRunning) {
		t.Errorf("Exists on a stopped server = %v, want ErrServerNotRunning", err)
	}
}

func TestUploadBodyTooLarge(t *testing.T) {
	hub := hubtest.Get(t)
	if !hub.Own {
		t.Skip("the external hub's body limit is unknown")
	}
	const chunk = hubtest.MaxBodySize * 7 / 8 // over the limit once base64-encoded
	c, user := running(t, hub, chunk)
	src, _ := randomFile(t, chunk)
	err := c.Upload(testContext(t), user, "too-big.bin", src, chunk, nil)
	if got := contract.CodeOf(err); got != hubclient.CodeBodyTooLarge {
		t.Errorf("code = %q (%v), want %q", got, err, hubclient.CodeBodyTooLarge)
	}
	if names := dirNames(t, hub.UserPath(user, "")); len(names) != 0 {
		t.Errorf("notebook root holds %v after a failed upload, want nothing", names)
	}
}
