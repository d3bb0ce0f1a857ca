package stage_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/adler32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

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

// TestCopyReportsProgress: a copy of several chunks reports its progress
// while it runs. The copy waits after its first chunk until a report comes,
// so the test does not depend on how fast the disk is.
func TestCopyReportsProgress(t *testing.T) {
	f := newFixture(t, "")
	size := 48 << 20 // three chunks
	big := filepath.Join(f.storage, "big.bin")
	must(t, os.WriteFile(big, make([]byte, size), 0o644))
	var mu sync.Mutex
	var reports []contract.Progress
	reported := make(chan struct{})
	var first sync.Once
	var wait sync.Once
	stage.SetAfterChunk(f.s, func(string) {
		wait.Do(func() {
			select {
			case <-reported:
			case <-time.After(10 * time.Second):
				t.Error("no progress reported while the copy was under way")
			}
		})
	})
	_, err := f.s.Copy(context.Background(), cmd("req", "big.bin", "big.bin"), stage.ProgressFunc(func(p contract.Progress) {
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, p)
		if p.BytesDone > 0 {
			first.Do(func() { close(reported) })
		}
	}))
	must(t, err)
	mu.Lock()
	defer mu.Unlock()
	if len(reports) == 0 {
		t.Fatal("no progress reports")
	}
	for i, p := range reports {
		if p.BytesTotal != int64(size) || p.FilesTotal != 1 || p.BytesDone > p.BytesTotal {
			t.Errorf("report %d = %+v: wrong totals", i, p)
		}
		if i > 0 && p.BytesDone < reports[i-1].BytesDone {
			t.Errorf("report %d = %+v goes backwards", i, p)
		}
	}
}

// TestSmallCopyReportsNoProgress: a single file of one chunk is copied by
// one call, so its copy has no progress to report.
func TestSmallCopyReportsNoProgress(t *testing.T) {
	f := newFixture(t, "")
	var reports atomic.Int32
	_, err := f.s.Copy(context.Background(), cmd("req", "obs/x.fits", "x.fits"), stage.ProgressFunc(func(contract.Progress) { reports.Add(1) }))
	must(t, err)
	if n := reports.Load(); n != 0 {
		t.Errorf("%d progress reports for a 10-byte copy, want none", n)
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
