package stage_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

// TestErrorClasses checks the table of error classes of docs/messages.md:
// each errno the filesystem may answer is either a verdict with a code
// (never retried) or a fault without one (retried).
func TestErrorClasses(t *testing.T) {
	tests := []struct {
		errno      syscall.Errno
		wantTarget contract.Code // "": retried
		wantSource contract.Code
	}{
		{syscall.ENAMETOOLONG, contract.CodeInvalidPath, contract.CodeInvalidPath},
		{syscall.EINVAL, contract.CodeInvalidPath, contract.CodeInvalidPath},
		{syscall.ELOOP, contract.CodeOutsideUserArea, contract.CodeOutsideStorage},
		{syscall.ENOENT, "", contract.CodeSourceNotFound},
		{syscall.ENOTDIR, contract.CodeTargetConflict, contract.CodeSourceNotFound},
		{syscall.EEXIST, contract.CodeTargetConflict, ""},
		{syscall.ENOTEMPTY, contract.CodeTargetConflict, ""},
		{syscall.EISDIR, contract.CodeTargetConflict, ""},
		{syscall.ENOSPC, contract.CodeNoSpace, ""},
		{syscall.EDQUOT, contract.CodeNoSpace, ""},
		{syscall.EFBIG, contract.CodeNoSpace, ""},
		{syscall.EXDEV, contract.CodeCrossDevice, ""},
		{syscall.EACCES, contract.CodeIOError, contract.CodeIOError},
		{syscall.EPERM, contract.CodeIOError, contract.CodeIOError},
		{syscall.EROFS, contract.CodeIOError, ""},
		{syscall.EMLINK, contract.CodeIOError, ""},
		{syscall.EIO, "", ""},
		{syscall.ESTALE, "", ""},
		{syscall.ETIMEDOUT, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.errno.Error(), func(t *testing.T) {
			err := &fs.PathError{Op: "openat", Path: "x", Err: tt.errno}
			if got := codeOrNone(stage.TargetError("alice/x", err)); got != tt.wantTarget {
				t.Errorf("target: got %q, want %q", got, tt.wantTarget)
			}
			if got := codeOrNone(storage.SourceError("x", err)); got != tt.wantSource {
				t.Errorf("source: got %q, want %q", got, tt.wantSource)
			}
		})
	}
}

// codeOrNone is err's contract code, "" when it carries none (a fault the
// worker retries).
func codeOrNone(err error) contract.Code {
	if e, ok := errors.AsType[*contract.Error](err); ok {
		return e.Code
	}
	return ""
}

// TestNameTooLong checks that a target or a source name longer than the
// filesystem allows fails at once with invalid_path for every method: the
// request's fault, which no retry can cure.
func TestNameTooLong(t *testing.T) {
	long := strings.Repeat("n", 300)
	tests := []struct {
		name     string
		src, rel string
	}{
		{name: "target", src: "obs/x.fits", rel: "d/" + long},
		{name: "target directory", src: "obs/x.fits", rel: long + "/x"},
		{name: "source", src: "obs/" + long, rel: "d/x"},
	}
	for _, tt := range tests {
		for method, run := range writers {
			t.Run(tt.name+"/"+method, func(t *testing.T) {
				f := newFixture(t, "")
				err := run(f.s, cmd("req", tt.src, tt.rel))
				if got := codeOrNone(err); got != contract.CodeInvalidPath {
					t.Errorf("got %q (%v), want invalid_path", got, err)
				}
			})
		}
	}
}

// TestUserAreaSymlink checks that a user's area that is a symbolic link
// (victor -> bob, placed by someone with a shell) is refused for every
// method, and nothing lands in the area it points at.
func TestUserAreaSymlink(t *testing.T) {
	for method, run := range writers {
		t.Run(method, func(t *testing.T) {
			f := newFixture(t, "")
			must(t, os.Mkdir(filepath.Join(f.userArea, "bob"), 0o755))
			must(t, os.Symlink("bob", filepath.Join(f.userArea, "victor")))
			c := cmd("req", "obs/x.fits", "x.fits")
			c.Username = "victor"
			err := run(f.s, c)
			if got := codeOrNone(err); got != contract.CodeOutsideUserArea {
				t.Errorf("got %q (%v), want outside_user_area", got, err)
			}
			if got := listing(t, filepath.Join(f.userArea, "bob")); len(got) != 1 {
				t.Errorf("bob's area: got %q, want it empty", got)
			}
		})
	}
}
