// Package storage resolves the source paths of staging requests on a storage
// mount and opens them through os.Root, so a request can never reach outside
// the mount: not with "..", not with an absolute path elsewhere, not through
// a symbolic link. The stager and the jupyter-bridge read sources with these
// same rules.
package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/skao/skao-staging/libs/contract"
)

// Root is one storage mount, opened once and shared by every request.
type Root struct {
	dir  string // absolute, cleaned, as configured
	real string // dir with its symbolic links resolved
	root *os.Root
}

// Open opens the storage mounted at dir.
func Open(dir string) (*Root, error) {
	if dir == "" {
		return nil, errors.New("open storage: no directory configured")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open storage %s: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("open storage %s: %w", dir, err)
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("open storage %s: %w", dir, err)
	}
	return &Root{dir: abs, real: real, root: r}, nil
}

// Dir is the absolute path of the mount as configured.
func (r *Root) Dir() string { return r.dir }

// OS is the os.Root of the mount, for callers that walk or read through it.
func (r *Root) OS() *os.Root { return r.root }

// Close releases the mount's directory handle.
func (r *Root) Close() error { return r.root.Close() }

// Rel turns a request's local_path_on_storage into a path relative to the
// mount. An absolute path must lie inside the mount (as configured or with
// its symbolic links resolved: clients send "/mnt/storage_a/..."); a relative
// one is taken from the mount. Anything climbing out is outside_storage and
// the mount itself is not a stageable item. Rel only looks at the text:
// symbolic links are checked when the path is opened.
func (r *Root) Rel(p string) (string, error) {
	if p == "" {
		return "", contract.Errorf(contract.CodeMissingField, "local_path_on_storage is required")
	}
	if strings.ContainsRune(p, 0) || strings.Contains(p, `\`) {
		return "", contract.Errorf(contract.CodeInvalidPath, "local_path_on_storage %q is not a valid path", p)
	}
	clean := path.Clean(p)
	if path.IsAbs(clean) {
		rel, ok := within(r.dir, clean)
		if !ok {
			rel, ok = within(r.real, clean)
		}
		if !ok {
			return "", contract.Errorf(contract.CodeOutsideStorage, "%s is outside the storage %s", p, r.dir)
		}
		clean = rel
	}
	if clean == "." {
		return "", contract.Errorf(contract.CodeInvalidPath, "%s names the storage root itself, not an item on it", p)
	}
	if !filepath.IsLocal(clean) {
		return "", contract.Errorf(contract.CodeOutsideStorage, "%s is outside the storage %s", p, r.dir)
	}
	return clean, nil
}

// within returns p relative to dir when p is dir or lies below it.
func within(dir, p string) (string, bool) {
	if p == dir {
		return ".", true
	}
	if dir == "/" {
		return p[1:], true
	}
	if rest, ok := strings.CutPrefix(p, dir+"/"); ok {
		return rest, true
	}
	return "", false
}

// Open opens the source p (see Rel) for reading.
func (r *Root) Open(p string) (*os.File, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return nil, err
	}
	f, err := r.root.Open(rel)
	if err != nil {
		return nil, SourceError(p, err)
	}
	return f, nil
}

// Stat resolves p (see Rel) following symbolic links inside the mount and
// returns its root-relative path and what it names.
func (r *Root) Stat(p string) (string, fs.FileInfo, error) {
	rel, err := r.Rel(p)
	if err != nil {
		return "", nil, err
	}
	fi, err := r.root.Stat(rel)
	if err != nil {
		return "", nil, SourceError(p, err)
	}
	return rel, fi, nil
}

// IsEscape reports whether err is os.Root refusing a path that leads outside
// the root, through ".." or a symbolic link (absolute symbolic links are
// always refused).
func IsEscape(err error) bool {
	// os.Root does not export its "path escapes from parent" error, and
	// nests it in more than one *fs.PathError (MkdirAll), so the chain is
	// searched for its text.
	switch e := err.(type) {
	case nil:
		return false
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			if IsEscape(inner) {
				return true
			}
		}
		return false
	}
	if err.Error() == "path escapes from parent" {
		return true
	}
	return IsEscape(errors.Unwrap(err))
}

// SourceError maps an error from reading source p to the contract's codes:
// source_not_found, outside_storage, invalid_path for a name the filesystem
// refuses, or io_error for a refusal by the filesystem. Other errors (an I/O fault that a retry may cure) are returned
// wrapped but without a code.
func SourceError(p string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%w: %w", contract.Errorf(contract.CodeSourceNotFound, "%s does not exist on the storage", p), err)
	case IsEscape(err), errors.Is(err, syscall.ELOOP):
		return fmt.Errorf("%w: %w", contract.Errorf(contract.CodeOutsideStorage, "%s leads outside the storage through a symbolic link", p), err)
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%w: %w", contract.Errorf(contract.CodeInvalidPath, "%s is a name the storage's filesystem refuses (too long or invalid)", p), err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", contract.Errorf(contract.CodeIOError, "%s cannot be read: permission denied", p), err)
	}
	return fmt.Errorf("read %s: %w", p, err)
}
