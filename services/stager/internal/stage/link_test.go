package stage_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

// linkCase is a link request from src to alice/d/l, made after prepare,
// and what it must end with: an outcome, or an error code.
type linkCase struct {
	name     string
	src      string
	prepare  func(t *testing.T, f *fixture)
	wantOut  contract.Outcome
	wantCode contract.Code
}

// run prepares f, makes the link with link and checks its outcome or error
// code; it reports whether the link was made or found, for the caller to
// look at it.
func (tt linkCase) run(t *testing.T, f *fixture, link func(*stage.Stager, context.Context, contract.Command) (stage.Result, error)) bool {
	t.Helper()
	if tt.prepare != nil {
		tt.prepare(t, f)
	}
	got, err := link(f.s, t.Context(), cmd("req", tt.src, "d/l"))
	if tt.wantCode != "" {
		if code := contract.CodeOf(err); code != tt.wantCode {
			t.Fatalf("error = %v, want code %s", err, tt.wantCode)
		}
		return false
	}
	must(t, err)
	if got.Outcome != tt.wantOut {
		t.Errorf("outcome = %s, want %s", got.Outcome, tt.wantOut)
	}
	return true
}

func TestSymlink(t *testing.T) {
	tests := []linkCase{
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
			before, err := os.Stat(filepath.Join(f.storage, "obs/x.fits"))
			must(t, err)
			if !tt.run(t, f, (*stage.Stager).Symlink) {
				return
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
	tests := []linkCase{
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
			if !tt.run(t, f, (*stage.Stager).Hardlink) || tt.wantOut != contract.OutcomeStaged {
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
