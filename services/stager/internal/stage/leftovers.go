package stage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"github.com/skao/skao-staging/libs/contract"
)

// A copy in progress is tracked by a marker file in inflightDir, at the top
// of the user area, naming its user and temporary entry. A redelivery of
// the request removes its own leftover (the temporary name depends on the
// request id only); the markers find what no redelivery will come back for
// (a request given up, a message deleted) without walking the user area,
// which holds every staged tree: the cost is one marker per tree or large
// file in flight (see trackAbove). A user's directory cannot clash with
// it: usernames never start with a dot.
const inflightDir = ".staging-inflight"

// trackAbove is the size above which a single-file copy is tracked by a
// marker; a tree is always tracked. The marker costs a small request about
// as much as the copy itself (a mkdir, a file written and removed; the
// profile is in docs/benchmarks.md), and it only matters for a request that
// crashes and is never delivered again: a redelivery removes its own
// leftover, its temporary name depending on the request id only. An
// untracked copy holds its temporary file for milliseconds, so such a
// leftover is unlikely, and it is at most trackAbove bytes, hidden under a
// dot name the user may remove. A large file or a tree is written for long
// and its leftover can be large: those keep their marker.
const trackAbove = 4 << 20

// track writes the marker of t's temporary entry before anything is
// written under it.
func (s *Stager) track(id string, t *target) error {
	if err := s.Users.Mkdir(inflightDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("track %s: %w", t.shown, err)
	}
	t.marker = path.Join(inflightDir, id)
	if err := s.Users.WriteFile(t.marker, []byte(t.username+"\n"+t.tmpRel+"\n"), 0o600); err != nil {
		t.marker = ""
		return fmt.Errorf("track %s: %w", t.shown, err)
	}
	return nil
}

// untrack removes t's marker once its temporary entry is gone (renamed
// into place or removed); a temporary entry that could not be removed
// keeps its marker for CleanLeftovers.
func (s *Stager) untrack(t *target) {
	if t.marker == "" {
		return
	}
	if _, err := t.lstat(path.Base(t.tmpRel)); !errors.Is(err, fs.ErrNotExist) {
		return
	}
	// A marker that cannot be removed only costs a later CleanLeftovers a
	// look at a temporary entry that is gone.
	_ = s.Users.Remove(t.marker)
}

// CleanLeftovers removes the temporary entries of copies whose marker is
// older than grace, and their markers, and returns how many it removed.
// grace must exceed the longest a copy may take (the stage timeout), since
// another stager may still be writing a younger one.
func (s *Stager) CleanLeftovers(ctx context.Context, grace time.Duration) (int, error) {
	entries, err := fs.ReadDir(s.Users.FS(), inflightDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", inflightDir, err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		if ctx.Err() != nil {
			return removed, ctx.Err()
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || time.Since(info.ModTime()) < grace {
			continue
		}
		marker := path.Join(inflightDir, e.Name())
		if err := s.removeLeftover(marker); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// removeLeftover removes the temporary entry a marker names, then the
// marker. A marker naming anything but a temporary entry of the stager's
// is only removed itself.
func (s *Stager) removeLeftover(marker string) error {
	data, err := s.Users.ReadFile(marker)
	if err != nil {
		return fmt.Errorf("read %s: %w", marker, err)
	}
	username, tmpRel, _ := strings.Cut(strings.TrimSuffix(string(data), "\n"), "\n")
	if contract.ValidateUsername(username) == nil && contract.ValidateRelativePath(tmpRel) == nil && strings.HasPrefix(path.Base(tmpRel), tempPrefix) {
		user, err := s.Users.OpenRoot(username)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("open %s: %w", username, err)
		default:
			err := removeTemp(user, tmpRel)
			user.Close()
			if err != nil {
				return err
			}
		}
	}
	if err := s.Users.Remove(marker); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", marker, err)
	}
	return nil
}
