package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

// TestSourceChangesDuringCopy changes a source larger than one copy chunk
// after its first chunk is copied. A source that shrinks or grows fails the
// request and leaves nothing at the target, under its name or the temporary
// one, nor an in-flight marker. A source removed meanwhile is still read whole
// through the descriptor already open: the copy is complete.
func TestSourceChangesDuringCopy(t *testing.T) {
	const size = 40 << 20 // above the 16 MiB chunk, and tracked by a marker
	tests := []struct {
		name     string
		change   func(p string) error
		wantErr  string
		wantTree []string // below users/alice
	}{
		{
			name:     "truncated",
			change:   func(p string) error { return os.Truncate(p, 1<<20) },
			wantErr:  "it changed during the copy",
			wantTree: []string{". drwxr-xr-x", "in drwxr-xr-x"},
		},
		{
			name:     "truncated to nothing",
			change:   func(p string) error { return os.Truncate(p, 0) },
			wantErr:  "it changed during the copy",
			wantTree: []string{". drwxr-xr-x", "in drwxr-xr-x"},
		},
		{
			name: "grown",
			change: func(p string) error {
				f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return err
				}
				_, err = f.Write([]byte("more"))
				return errors.Join(err, f.Close())
			},
			wantErr:  "it changed during the copy",
			wantTree: []string{". drwxr-xr-x", "in drwxr-xr-x"},
		},
		{
			name:     "removed",
			change:   os.Remove,
			wantTree: []string{". drwxr-xr-x", "in drwxr-xr-x", "in/big.bin -r-------- (41943040 bytes)"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			src := filepath.Join(f.storage, "big.bin")
			must(t, os.WriteFile(src, make([]byte, size), 0o644))
			changed := 0
			stage.SetAfterChunk(f.s, func(string) {
				if changed++; changed == 1 {
					must(t, tc.change(src))
				}
			})
			_, err := f.s.Copy(context.Background(), cmd("req", "big.bin", "in/big.bin"), nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Copy: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Copy: got error %v, want one containing %q", err, tc.wantErr)
			}
			if changed == 0 {
				t.Fatal("the source was never changed: the copy took a single chunk")
			}
			if diff := cmp.Diff(sizes(t, filepath.Join(f.userArea, "alice")), tc.wantTree); diff != "" {
				t.Errorf("user area (-got +want):\n%s", diff)
			}
			markers, err := os.ReadDir(filepath.Join(f.userArea, ".staging-inflight"))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			if len(markers) != 0 {
				t.Errorf("in-flight markers left: %v", markers)
			}
		})
	}
}

// sizes is listing with the size of each file instead of its content.
func sizes(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		line := fmt.Sprintf("%s %s", rel, fi.Mode())
		if fi.Mode().IsRegular() {
			line += fmt.Sprintf(" (%d bytes)", fi.Size())
		}
		out = append(out, line)
		return nil
	})
	must(t, err)
	return out
}

// unprivilegedDir names, in the environment of this test binary run again
// as an unprivileged user, the directory TestPermissionDenied laid out.
const unprivilegedDir = "STAGE_TEST_UNPRIVILEGED_DIR"

// TestPermissionDenied checks that a source the stager may not read and a
// user area it may not write fail with io_error and a message saying so.
// Root bypasses permissions, so when the tests run as root this test lays
// out the files and runs a copy of the test binary again as nobody (with
// setpriv), where TestPermissionDeniedUnprivileged does the checks.
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() != 0 {
		dir := t.TempDir()
		layOutPermissions(t, dir, -1)
		checkPermissionDenied(t, dir)
		return
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skipf("running as root and no setpriv to drop privileges: permission checks not run: %v", err)
	}
	self, err := os.Executable()
	must(t, err)
	// Everything nobody needs must be reachable: t.TempDir's directories are
	// 0700, and so is the build directory of the test binary.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		must(t, os.Chmod(d, 0o755))
	}
	bin := filepath.Join(dir, "stage.test")
	data, err := os.ReadFile(self)
	must(t, err)
	must(t, os.WriteFile(bin, data, 0o755))
	work := filepath.Join(dir, "work")
	must(t, os.Mkdir(work, 0o755))
	layOutPermissions(t, work, 65534)
	t.Cleanup(func() { makeRemovable(t, work) })

	c := exec.Command(setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
		bin, "-test.run", "^TestPermissionDeniedUnprivileged$", "-test.v", "-test.count=1")
	c.Env = append(os.Environ(), unprivilegedDir+"="+work, "HOME="+work, "GOCOVERDIR=")
	c.Dir = work
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("run as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestPermissionDeniedUnprivileged") {
		t.Fatalf("run as nobody: the checks did not run:\n%s", out)
	}
	t.Logf("run as nobody:\n%s", out)
}

// TestPermissionDeniedUnprivileged is TestPermissionDenied's checks, run
// as nobody; it is skipped when run otherwise.
func TestPermissionDeniedUnprivileged(t *testing.T) {
	dir := os.Getenv(unprivilegedDir)
	if dir == "" {
		t.Skip("run by TestPermissionDenied only")
	}
	if os.Geteuid() == 0 {
		t.Fatal("still root")
	}
	checkPermissionDenied(t, dir)
}

// layOutPermissions makes, in dir, a storage with a readable and an
// unreadable file, and a user area where alice's directory is writable by
// the stager (given to uid when it is not -1) and carol's is not.
func layOutPermissions(t *testing.T, dir string, uid int) {
	t.Helper()
	write(t, dir, "storage/open.bin", "open")
	write(t, dir, "storage/secret.bin", "secret")
	must(t, os.Chmod(filepath.Join(dir, "storage/secret.bin"), 0o000))
	must(t, os.MkdirAll(filepath.Join(dir, "users/alice"), 0o755))
	must(t, os.MkdirAll(filepath.Join(dir, "users/carol/data"), 0o755))
	must(t, os.Chmod(filepath.Join(dir, "users/carol/data"), 0o555))
	if uid != -1 {
		must(t, os.Chown(filepath.Join(dir, "users/alice"), uid, uid))
	}
}

func checkPermissionDenied(t *testing.T, dir string) {
	t.Helper()
	src, err := storage.Open(filepath.Join(dir, "storage"))
	must(t, err)
	defer src.Close()
	users, err := os.OpenRoot(filepath.Join(dir, "users"))
	must(t, err)
	defer users.Close()
	f := &stage.Stager{Source: src, Users: users, Tracer: noop.NewTracerProvider().Tracer("test")}
	tests := []struct {
		name, user, src, rel string
		wantMsg              string
	}{
		{name: "source unreadable", user: "alice", src: "secret.bin", rel: "s.bin", wantMsg: "secret.bin cannot be read: permission denied"},
		{name: "target not writable", user: "carol", src: "open.bin", rel: "data/o.bin", wantMsg: "carol/data/o.bin cannot be written: permission denied"},
		{name: "user area not writable", user: "dave", src: "open.bin", rel: "o.bin", wantMsg: "permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := cmd("req", tc.src, tc.rel)
			c.Username = tc.user
			_, err := f.Copy(context.Background(), c, nil)
			if err == nil {
				t.Fatal("Copy: got no error, want io_error")
			}
			if code := contract.CodeOf(err); code != contract.CodeIOError || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Copy: got %s: %v, want io_error containing %q", code, err, tc.wantMsg)
			}
		})
	}
	for _, p := range []string{"users/alice/s.bin", "users/alice/.staging-req.tmp", "users/carol/data/o.bin", "users/dave"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: got %v, want it not to exist", p, err)
		}
	}
}

// TestTreeFileReplacedDuringCopy replaces a file of a tree, after the plan
// saw it as a regular file and before it is copied, by something the copy
// must not read: a symbolic link (to a file outside the storage, or to one
// inside) or a FIFO. The request fails with invalid_path, nothing is left
// in the user area, and nothing outside the storage was read.
func TestTreeFileReplacedDuringCopy(t *testing.T) {
	tests := []struct {
		name    string
		replace func(f *fixture, p string) error
	}{
		{"symlink leading out", func(f *fixture, p string) error { return os.Symlink(filepath.Join(f.outside, "secret"), p) }},
		{"symlink inside the storage", func(f *fixture, p string) error { return os.Symlink("../obs/x.fits", p) }},
		{"fifo", func(_ *fixture, p string) error { return syscall.Mkfifo(p, 0o644) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, "")
			// a.bin is copied first and takes two chunks: b.txt is
			// replaced after the first.
			write(t, f.storage, "swap/b.txt", "b")
			must(t, os.WriteFile(filepath.Join(f.storage, "swap", "a.bin"), make([]byte, 17<<20), 0o644))
			b := filepath.Join(f.storage, "swap", "b.txt")
			replaced := false
			stage.SetAfterChunk(f.s, func(string) {
				if !replaced {
					replaced = true
					must(t, os.Remove(b))
					must(t, tc.replace(f, b))
				}
			})
			_, err := f.s.Copy(context.Background(), cmd("req", "swap", "swap"), nil)
			if !replaced {
				t.Fatal("b.txt was never replaced: a.bin took a single chunk")
			}
			if code := contract.CodeOf(err); code != contract.CodeInvalidPath {
				t.Fatalf("Copy error = %v (code %s), want code invalid_path", err, code)
			}
			if diff := cmp.Diff(sizes(t, filepath.Join(f.userArea, "alice")), []string{". drwxr-xr-x"}); diff != "" {
				t.Errorf("user area (-got +want):\n%s", diff)
			}
		})
	}
}
