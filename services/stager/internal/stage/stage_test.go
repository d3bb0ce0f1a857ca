package stage_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/adler32"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/stager/internal/ownership"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

type fixture struct {
	s        *stage.Stager
	storage  string
	userArea string
	outside  string
}

// newFixture lays out a storage with a file, a tree, a symbolic link
// inside and one leading out, and an empty user area. storageParent, when
// set, is where the storage goes (another filesystem).
func newFixture(t *testing.T, storageParent string) *fixture {
	t.Helper()
	dir := t.TempDir()
	if storageParent == "" {
		storageParent = dir
	}
	f := &fixture{storage: filepath.Join(storageParent, "storage_a"), userArea: filepath.Join(dir, "users"), outside: filepath.Join(dir, "outside")}
	for _, d := range []string{f.storage, f.userArea, f.outside} {
		must(t, os.MkdirAll(d, 0o755))
	}
	write(t, f.storage, "obs/x.fits", "hello, sky")
	write(t, f.storage, "tree/a.txt", "a")
	write(t, f.storage, "tree/sub/b.txt", "bb")
	write(t, f.storage, "tree/sub/deeper/c.txt", "ccc")
	must(t, os.Mkdir(filepath.Join(f.storage, "tree/empty"), 0o755))
	must(t, os.Symlink("../obs/x.fits", filepath.Join(f.storage, "tree/linked.fits")))
	write(t, f.outside, "secret", "secret")
	must(t, os.Symlink(filepath.Join(f.outside, "secret"), filepath.Join(f.storage, "obs/escape")))
	write(t, f.storage, "bad/ok.txt", "ok")
	must(t, os.Symlink("../../outside/secret", filepath.Join(f.storage, "bad/escape")))

	src, err := storage.Open(f.storage)
	must(t, err)
	users, err := os.OpenRoot(f.userArea)
	must(t, err)
	t.Cleanup(func() {
		src.Close()
		users.Close()
		makeRemovable(t, f.userArea)
	})
	f.s = &stage.Stager{Source: src, Users: users, Workers: 3, Tracer: noop.NewTracerProvider().Tracer("test"), ProgressEvery: time.Millisecond}
	return f
}

func makeRemovable(t testing.TB, dir string) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	})
	if err != nil {
		t.Logf("restore permissions: %v", err)
	}
}

func write(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func cmd(id, src, rel string) contract.Command {
	return contract.Command{SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy, Username: "alice", LocalPathOnStorage: src, RelativePath: rel}
}

// listing describes every entry below dir: mode and, for files, content.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	must(t, err)
	sort.Strings(out)
	return out
}

func TestCopy(t *testing.T) {
	tests := []struct {
		name     string
		src, rel string
		prepare  func(t *testing.T, f *fixture)
		want     stage.Result
		wantCode contract.Code
		wantTree []string // below users/alice
	}{
		{
			name: "file, absolute source", src: "ABS/obs/x.fits", rel: "data/x.fits",
			want:     stage.Result{Outcome: contract.OutcomeStaged, Bytes: 10, Files: 1, Message: "staged 1 file (10 bytes) to alice/data/x.fits"},
			wantTree: []string{". drwxr-xr-x", "data drwxr-xr-x", "data/x.fits -r-------- hello, sky"},
		},
		{
			name: "tree", src: "tree", rel: "t",
			want: stage.Result{Outcome: contract.OutcomeStaged, Bytes: 16, Files: 4, Message: "staged 4 files (16 bytes) to alice/t"},
			wantTree: []string{
				". drwxr-xr-x", "t dr-x------", "t/a.txt -r-------- a", "t/empty dr-x------",
				"t/linked.fits -r-------- hello, sky", "t/sub dr-x------", "t/sub/b.txt -r-------- bb",
				"t/sub/deeper dr-x------", "t/sub/deeper/c.txt -r-------- ccc",
			},
		},
		{
			name: "already present", src: "obs/x.fits", rel: "x.fits",
			prepare:  func(t *testing.T, f *fixture) { write(t, f.userArea, "alice/x.fits", "older copy") },
			want:     stage.Result{Outcome: contract.OutcomeAlreadyPresent, Message: "already present at alice/x.fits; nothing was changed"},
			wantTree: []string{". drwxr-xr-x", "x.fits -rw-r--r-- older copy"},
		},
		{
			name: "a file of another size", src: "obs/x.fits", rel: "x.fits",
			prepare:  func(t *testing.T, f *fixture) { write(t, f.userArea, "alice/x.fits", "older") },
			wantCode: contract.CodeTargetConflict,
			wantTree: []string{". drwxr-xr-x", "x.fits -rw-r--r-- older"},
		},
		{
			name: "directory where a file goes", src: "obs/x.fits", rel: "x.fits",
			prepare:  func(t *testing.T, f *fixture) { must(t, os.MkdirAll(filepath.Join(f.userArea, "alice/x.fits"), 0o755)) },
			wantCode: contract.CodeTargetConflict,
			wantTree: []string{". drwxr-xr-x", "x.fits drwxr-xr-x"},
		},
		{
			name: "file in the way of a parent", src: "obs/x.fits", rel: "f/x.fits",
			prepare:  func(t *testing.T, f *fixture) { write(t, f.userArea, "alice/f", "") },
			wantCode: contract.CodeTargetConflict,
			wantTree: []string{". drwxr-xr-x", "f -rw-r--r-- "},
		},
		{
			name: "leftover of a crashed attempt is removed", src: "tree", rel: "t",
			prepare: func(t *testing.T, f *fixture) {
				write(t, f.userArea, "alice/.staging-req.tmp/sub/half", "half")
				must(t, os.Chmod(filepath.Join(f.userArea, "alice/.staging-req.tmp/sub"), 0o500))
			},
			want: stage.Result{Outcome: contract.OutcomeStaged, Bytes: 16, Files: 4, Message: "staged 4 files (16 bytes) to alice/t"},
		},
		{
			name: "leftover file of a crashed attempt is removed", src: "obs/x.fits", rel: "x.fits",
			prepare: func(t *testing.T, f *fixture) {
				write(t, f.userArea, "alice/.staging-req.tmp", "half")
				must(t, os.Chmod(filepath.Join(f.userArea, "alice/.staging-req.tmp"), 0o400))
			},
			want:     stage.Result{Outcome: contract.OutcomeStaged, Bytes: 10, Files: 1, Message: "staged 1 file (10 bytes) to alice/x.fits"},
			wantTree: []string{". drwxr-xr-x", "x.fits -r-------- hello, sky"},
		},
		{
			name: "already present, leftover of a crashed attempt removed", src: "tree", rel: "t",
			prepare: func(t *testing.T, f *fixture) {
				must(t, os.MkdirAll(filepath.Join(f.userArea, "alice/t"), 0o755))
				write(t, f.userArea, "alice/.staging-req.tmp/half", "half")
			},
			want:     stage.Result{Outcome: contract.OutcomeAlreadyPresent, Message: "already present at alice/t; nothing was changed"},
			wantTree: []string{". drwxr-xr-x", "t drwxr-xr-x"},
		},
		{name: "missing source", src: "obs/none", rel: "x", wantCode: contract.CodeSourceNotFound, wantTree: []string{}},
		{name: "absolute source elsewhere", src: "/etc/passwd", rel: "x", wantCode: contract.CodeOutsideStorage, wantTree: []string{}},
		{name: "symlink leading out", src: "obs/escape", rel: "x", wantCode: contract.CodeOutsideStorage, wantTree: []string{}},
		{name: "tree with a symlink leading out", src: "bad", rel: "bad", wantCode: contract.CodeOutsideStorage, wantTree: []string{}},
		{
			name: "user area symlink leading out", src: "obs/x.fits", rel: "out/x.fits",
			prepare: func(t *testing.T, f *fixture) {
				must(t, os.MkdirAll(filepath.Join(f.userArea, "alice"), 0o755))
				must(t, os.Symlink(f.outside, filepath.Join(f.userArea, "alice/out")))
			},
			wantCode: contract.CodeOutsideUserArea,
		},
		{name: "target named like a temporary", src: "obs/x.fits", rel: ".staging-x.tmp", wantCode: contract.CodeInvalidPath},
	}
	// Every case holds whether copies are synced to disk or not.
	for _, tt := range tests {
		for _, noSync := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/NoSync=%v", tt.name, noSync), func(t *testing.T) {
				f := newFixture(t, "")
				f.s.NoSync = noSync
				if tt.prepare != nil {
					tt.prepare(t, f)
				}
				src := strings.Replace(tt.src, "ABS", f.storage, 1)
				got, err := f.s.Copy(context.Background(), cmd("req", src, tt.rel), nil)
				if tt.wantCode != "" {
					if code := contract.CodeOf(err); code != tt.wantCode {
						t.Fatalf("Copy error = %v (code %s), want code %s", err, code, tt.wantCode)
					}
				} else {
					if err != nil {
						t.Fatalf("Copy: %v", err)
					}
					if diff := cmp.Diff(got, tt.want); diff != "" {
						t.Errorf("result (-got +want):\n%s", diff)
					}
				}
				alice := filepath.Join(f.userArea, "alice")
				if tt.wantTree != nil {
					var gotTree, wantTree []string
					if _, err := os.Stat(alice); err == nil {
						gotTree = listing(t, alice)
					}
					if len(tt.wantTree) > 0 {
						wantTree = tt.wantTree
					}
					if diff := cmp.Diff(gotTree, wantTree); diff != "" {
						t.Errorf("user area (-got +want):\n%s", diff)
					}
				}
				if leftovers, _ := filepath.Glob(filepath.Join(alice, "*", ".staging-*")); len(leftovers) > 0 {
					t.Errorf("temporary entries left: %v", leftovers)
				}
				if leftovers, _ := filepath.Glob(filepath.Join(alice, ".staging-*")); len(leftovers) > 0 {
					t.Errorf("temporary entries left: %v", leftovers)
				}
			})
		}
	}
}

func TestCopyChecksum(t *testing.T) {
	want := fmt.Sprintf("%08x", adler32.Checksum([]byte("hello, sky")))
	tests := []struct {
		name     string
		expected string
		wantCode contract.Code
	}{
		{"matching", want, ""},
		{"mismatch", "00000001", contract.CodeChecksumMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "")
			c := cmd("req", "obs/x.fits", "x.fits")
			c.ExpectedAdler32 = tt.expected
			got, err := f.s.Copy(context.Background(), c, nil)
			if code := contract.CodeOf(err); err != nil && code != tt.wantCode || err == nil && tt.wantCode != "" {
				t.Fatalf("Copy error = %v, want code %q", err, tt.wantCode)
			}
			_, statErr := os.Stat(filepath.Join(f.userArea, "alice/x.fits"))
			if tt.wantCode != "" {
				if statErr == nil {
					t.Error("a copy with the wrong checksum was left at the target")
				}
				return
			}
			if got.Adler32 != want {
				t.Errorf("adler32 = %q, want %q", got.Adler32, want)
			}
		})
	}
}

// TestCopyChecksumLargeFile checksums a file that takes several buffers
// and more than one chunk, of a size that is no multiple of either.
func TestCopyChecksumLargeFile(t *testing.T) {
	f := newFixture(t, "")
	data := make([]byte, 17<<20+3)
	for i := range data {
		data[i] = byte(i * 7 / 5)
	}
	must(t, os.WriteFile(filepath.Join(f.storage, "big.bin"), data, 0o644))
	c := cmd("req", "big.bin", "big.bin")
	c.ExpectedAdler32 = fmt.Sprintf("%08x", adler32.Checksum(data))
	got, err := f.s.Copy(context.Background(), c, nil)
	must(t, err)
	if got.Adler32 != c.ExpectedAdler32 || got.Bytes != int64(len(data)) {
		t.Errorf("Copy = %+v, want adler32 %s and %d bytes", got, c.ExpectedAdler32, len(data))
	}
	copied, err := os.ReadFile(filepath.Join(f.userArea, "alice", "big.bin"))
	must(t, err)
	if !bytes.Equal(copied, data) {
		t.Error("the copy differs from the source")
	}
}

// TestCopyAcrossFilesystems copies from a storage on another filesystem
// (a tmpfs), between which copy_file_range cannot copy: the copy goes
// through a buffer, for a file larger than one chunk and for a tree.
func TestCopyAcrossFilesystems(t *testing.T) {
	other, err := os.MkdirTemp("/dev/shm", "stager-test-")
	if err != nil {
		t.Skipf("SKIP: no /dev/shm for a second filesystem: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	f := newFixture(t, other)
	data := make([]byte, 17<<20+5)
	for i := range data {
		data[i] = byte(i * 3 / 2)
	}
	must(t, os.WriteFile(filepath.Join(f.storage, "big.bin"), data, 0o644))
	for _, c := range []contract.Command{cmd("req1", "big.bin", "big.bin"), cmd("req2", "tree", "t")} {
		if _, err := f.s.Copy(context.Background(), c, nil); err != nil {
			t.Fatalf("Copy %s: %v", c.LocalPathOnStorage, err)
		}
	}
	copied, err := os.ReadFile(filepath.Join(f.userArea, "alice", "big.bin"))
	must(t, err)
	if !bytes.Equal(copied, data) {
		t.Error("the copy of big.bin differs from the source")
	}
	want := []string{
		"t dr-x------", "t/a.txt -r-------- a", "t/empty dr-x------",
		"t/linked.fits -r-------- hello, sky", "t/sub dr-x------", "t/sub/b.txt -r-------- bb",
		"t/sub/deeper dr-x------", "t/sub/deeper/c.txt -r-------- ccc",
	}
	got := listing(t, filepath.Join(f.userArea, "alice"))
	got = slices.DeleteFunc(got, func(l string) bool { return !strings.HasPrefix(l, "t") })
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("tree (-got +want):\n%s", diff)
	}
}

func TestCopyReportsProgress(t *testing.T) {
	f := newFixture(t, "")
	size := 48 << 20 // three chunks
	big := filepath.Join(f.storage, "big.bin")
	must(t, os.WriteFile(big, make([]byte, size), 0o644))
	var mu sync.Mutex
	var reports []contract.Progress
	_, err := f.s.Copy(context.Background(), cmd("req", "big.bin", "big.bin"), func(p contract.Progress) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, p)
	})
	must(t, err)
	mu.Lock()
	defer mu.Unlock()
	for i, p := range reports {
		if p.BytesTotal != int64(size) || p.FilesTotal != 1 || p.BytesDone > p.BytesTotal {
			t.Errorf("report %d = %+v: wrong totals", i, p)
		}
		if i > 0 && p.BytesDone < reports[i-1].BytesDone {
			t.Errorf("report %d = %+v goes backwards", i, p)
		}
	}
	t.Logf("%d progress reports", len(reports))
}

// TestSmallCopyReportsNoProgress: a single file of one chunk is copied by
// one call, so its copy has no progress to report.
func TestSmallCopyReportsNoProgress(t *testing.T) {
	f := newFixture(t, "")
	var reports atomic.Int32
	_, err := f.s.Copy(context.Background(), cmd("req", "obs/x.fits", "x.fits"), func(contract.Progress) { reports.Add(1) })
	must(t, err)
	if n := reports.Load(); n != 0 {
		t.Errorf("%d progress reports for a 10-byte copy, want none", n)
	}
}

func TestSymlink(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		prepare  func(t *testing.T, f *fixture)
		wantOut  contract.Outcome
		wantCode contract.Code
	}{
		{name: "file", src: "obs/x.fits", wantOut: contract.OutcomeStaged},
		{name: "directory", src: "tree", wantOut: contract.OutcomeStaged},
		{name: "same link there", src: "obs/x.fits", wantOut: contract.OutcomeAlreadyPresent, prepare: func(t *testing.T, f *fixture) {
			must(t, os.MkdirAll(filepath.Join(f.userArea, "alice/d"), 0o755))
			must(t, os.Symlink(filepath.Join(f.storage, "obs/x.fits"), filepath.Join(f.userArea, "alice/d/l")))
		}},
		{name: "other link there", src: "obs/x.fits", wantCode: contract.CodeTargetConflict, prepare: func(t *testing.T, f *fixture) {
			must(t, os.MkdirAll(filepath.Join(f.userArea, "alice/d"), 0o755))
			must(t, os.Symlink("/elsewhere", filepath.Join(f.userArea, "alice/d/l")))
		}},
		{name: "file there", src: "obs/x.fits", wantCode: contract.CodeTargetConflict, prepare: func(t *testing.T, f *fixture) {
			write(t, f.userArea, "alice/d/l", "")
		}},
		{name: "symlink leading out", src: "obs/escape", wantCode: contract.CodeOutsideStorage},
		{name: "missing", src: "obs/none", wantCode: contract.CodeSourceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "")
			if tt.prepare != nil {
				tt.prepare(t, f)
			}
			before, err := os.Stat(filepath.Join(f.storage, "obs/x.fits"))
			must(t, err)
			got, err := f.s.Symlink(context.Background(), cmd("req", tt.src, "d/l"))
			if tt.wantCode != "" {
				if code := contract.CodeOf(err); code != tt.wantCode {
					t.Fatalf("Symlink error = %v, want code %s", err, tt.wantCode)
				}
				return
			}
			must(t, err)
			if got.Outcome != tt.wantOut {
				t.Errorf("outcome = %s, want %s", got.Outcome, tt.wantOut)
			}
			dest, err := os.Readlink(filepath.Join(f.userArea, "alice/d/l"))
			must(t, err)
			if want := filepath.Join(f.storage, tt.src); dest != want {
				t.Errorf("link points at %q, want %q", dest, want)
			}
			after, err := os.Stat(filepath.Join(f.storage, "obs/x.fits"))
			must(t, err)
			if after.Mode() != before.Mode() {
				t.Errorf("source mode changed from %v to %v", before.Mode(), after.Mode())
			}
		})
	}
}

func TestHardlink(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		prepare  func(t *testing.T, f *fixture)
		wantOut  contract.Outcome
		wantCode contract.Code
	}{
		{name: "file", src: "obs/x.fits", wantOut: contract.OutcomeStaged},
		{name: "through a symlink inside", src: "tree/linked.fits", wantOut: contract.OutcomeStaged},
		{name: "file there", src: "obs/x.fits", wantOut: contract.OutcomeAlreadyPresent, prepare: func(t *testing.T, f *fixture) {
			write(t, f.userArea, "alice/d/l", "other copy")
		}},
		{name: "file of another size there", src: "obs/x.fits", wantCode: contract.CodeTargetConflict, prepare: func(t *testing.T, f *fixture) {
			write(t, f.userArea, "alice/d/l", "other")
		}},
		{name: "directory", src: "tree", wantCode: contract.CodeInvalidPath},
		{name: "symlink leading out", src: "obs/escape", wantCode: contract.CodeOutsideStorage},
		{name: "missing", src: "obs/none", wantCode: contract.CodeSourceNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "")
			if tt.prepare != nil {
				tt.prepare(t, f)
			}
			got, err := f.s.Hardlink(context.Background(), cmd("req", tt.src, "d/l"))
			if tt.wantCode != "" {
				if code := contract.CodeOf(err); code != tt.wantCode {
					t.Fatalf("Hardlink error = %v, want code %s", err, tt.wantCode)
				}
				return
			}
			must(t, err)
			if got.Outcome != tt.wantOut {
				t.Errorf("outcome = %s, want %s", got.Outcome, tt.wantOut)
			}
			if tt.wantOut != contract.OutcomeStaged {
				return
			}
			src, err := os.Stat(filepath.Join(f.storage, "obs/x.fits"))
			must(t, err)
			dst, err := os.Lstat(filepath.Join(f.userArea, "alice/d/l"))
			must(t, err)
			if !os.SameFile(src, dst) {
				t.Error("target is not a hard link to the source")
			}
			if dst.Mode() != src.Mode() || src.Mode().Perm() != 0o644 {
				t.Errorf("modes changed: source %v, link %v", src.Mode(), dst.Mode())
			}
		})
	}
}

func TestHardlinkAcrossFilesystems(t *testing.T) {
	other, err := os.MkdirTemp("/dev/shm", "stager-test-")
	if err != nil {
		t.Skipf("SKIP: no /dev/shm for a second filesystem: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(other) })
	var a, b syscall.Stat_t
	must(t, syscall.Stat(other, &a))
	must(t, syscall.Stat(t.TempDir(), &b))
	if a.Dev == b.Dev {
		t.Skip("SKIP: /dev/shm and the temporary directory are on the same filesystem")
	}
	f := newFixture(t, other)
	_, err = f.s.Hardlink(context.Background(), cmd("req", "obs/x.fits", "x.fits"))
	if code := contract.CodeOf(err); code != contract.CodeCrossDevice {
		t.Fatalf("Hardlink error = %v, want code cross_device", err)
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t, "")
	rel, fi, err := f.s.Check(context.Background(), cmd("req", filepath.Join(f.storage, "tree"), "x"))
	must(t, err)
	if rel != "tree" || !fi.IsDir() {
		t.Errorf("Check = %q, dir %v; want tree, a directory", rel, fi.IsDir())
	}
	if _, _, err := f.s.Check(context.Background(), cmd("req", "obs/escape", "x")); contract.CodeOf(err) != contract.CodeOutsideStorage {
		t.Errorf("Check(obs/escape) error = %v, want outside_storage", err)
	}
}

// TestCopyNoSpace copies into a user area on a 1 MiB tmpfs, which needs
// root to mount.
func TestCopyNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: mounting a small tmpfs for the user area needs root")
	}
	f := newFixture(t, "")
	small := filepath.Join(t.TempDir(), "small")
	must(t, os.Mkdir(small, 0o755))
	if err := syscall.Mount("tmpfs", small, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("SKIP: cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(small, 0); err != nil {
			t.Errorf("unmount %s: %v", small, err)
		}
	})
	users, err := os.OpenRoot(small)
	must(t, err)
	defer users.Close()
	f.s.Users = users
	must(t, os.WriteFile(filepath.Join(f.storage, "big.bin"), make([]byte, 2<<20), 0o644))

	_, err = f.s.Copy(context.Background(), cmd("req", "big.bin", "big.bin"), nil)
	if code := contract.CodeOf(err); code != contract.CodeNoSpace {
		t.Fatalf("Copy error = %v, want code no_space", err)
	}
	if got := listing(t, filepath.Join(small, "alice")); len(got) != 1 {
		t.Errorf("user area after a refused copy: %v, want only the user's directory", got)
	}
}

// TestOwnership gives staged data to the user named in a map file; chown
// needs root.
func TestOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: giving files to another user needs root (CAP_CHOWN)")
	}
	f := newFixture(t, "")
	mapFile := filepath.Join(t.TempDir(), "owners")
	must(t, os.WriteFile(mapFile, []byte("# site users\nalice 1234:5678\n"), 0o644))
	owners, err := ownership.New(ownership.ModeMap, mapFile)
	must(t, err)
	f.s.Owners = owners

	_, err = f.s.Copy(context.Background(), cmd("req1", "tree", "deep/t"), nil)
	must(t, err)
	_, err = f.s.Symlink(context.Background(), cmd("req2", "obs/x.fits", "l"))
	must(t, err)
	_, err = f.s.Hardlink(context.Background(), cmd("req3", "obs/x.fits", "h"))
	must(t, err)

	owner := func(rel string) string {
		var st syscall.Stat_t
		must(t, syscall.Lstat(filepath.Join(f.userArea, rel), &st))
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	got := map[string]string{}
	for _, rel := range []string{"alice", "alice/deep", "alice/deep/t", "alice/deep/t/sub/deeper/c.txt", "alice/l", "alice/h"} {
		got[rel] = owner(rel)
	}
	want := map[string]string{
		"alice": "1234:5678", "alice/deep": "1234:5678", "alice/deep/t": "1234:5678",
		"alice/deep/t/sub/deeper/c.txt": "1234:5678", "alice/l": "1234:5678",
		// The hard link is the source's inode: never given away.
		"alice/h": "0:0",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("owners (-got +want):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(f.storage, "obs/x.fits")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("source mode after staging = %v, %v; want 0644", fi.Mode(), err)
	}

	_, err = f.s.Copy(context.Background(), contract.Command{ID: "req4", Username: "bob", LocalPathOnStorage: "obs/x.fits", RelativePath: "x"}, nil)
	if code := contract.CodeOf(err); code != contract.CodeInvalidUsername {
		t.Errorf("Copy for a user outside the map: error %v, want invalid_username", err)
	}
	if _, err := os.Stat(filepath.Join(f.userArea, "bob")); err == nil {
		t.Error("a directory was made for a user outside the map")
	}
}

// An expected_adler32 the method cannot check is refused before anything
// is made, never ignored: a tree has no one checksum, and links and
// download links copy nothing.
func TestChecksumNotCheckable(t *testing.T) {
	tests := []struct {
		name string
		src  string
		run  func(context.Context, *stage.Stager, contract.Command) error
	}{
		{"copy of a tree", "tree", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, err := s.Copy(ctx, c, nil)
			return err
		}},
		{"symlink", "obs/x.fits", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, err := s.Symlink(ctx, c)
			return err
		}},
		{"hardlink", "obs/x.fits", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, err := s.Hardlink(ctx, c)
			return err
		}},
		{"download check", "obs/x.fits", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, _, err := s.Check(ctx, c)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "")
			c := cmd("req", tt.src, "x")
			c.ExpectedAdler32 = "00000001"
			err := tt.run(t.Context(), f.s, c)
			if got := contract.CodeOf(err); got != contract.CodeMalformed {
				t.Errorf("error = %v, want code %s", err, contract.CodeMalformed)
			}
			if got := listing(t, f.userArea); len(got) != 1 {
				t.Errorf("the user area holds %v, want nothing", got[1:])
			}
		})
	}
}
