package stage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
)

// Symlink makes a symbolic link at the target pointing at the source's
// absolute path on disk. The link is never followed to change the source:
// no mode or owner is set through it.
func (s *Stager) Symlink(ctx context.Context, cmd contract.Command) (Result, error) {
	rel, _, err := s.linkSource(ctx, cmd)
	if err != nil {
		return Result{}, err
	}
	dest := filepath.Join(s.Source.Dir(), filepath.FromSlash(rel))
	t, err := s.linkTarget(ctx, cmd)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	if r, done, err := t.linkPresent(dest); done {
		return r, err
	}
	_, span := s.Tracer.Start(ctx, "stager.finalize")
	defer span.End()
	if err := t.user.Symlink(dest, t.rel); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if r, done, err := t.linkPresent(dest); done {
				return r, err
			}
		}
		return Result{}, targetError(t.shown, err)
	}
	if t.own {
		// Lchown: the link itself, never the source it points at.
		if err := t.user.Lchown(t.rel, t.owner.UID, t.owner.GID); err != nil {
			return Result{}, targetError(t.shown, err)
		}
	}
	return Result{Outcome: contract.OutcomeStaged, Message: fmt.Sprintf("linked %s to %s", t.shown, dest)}, nil
}

// linkPresent settles a symbolic link request whose target exists: done
// with already_present when it links to dest, with target_conflict when it
// is anything else.
func (t *target) linkPresent(dest string) (Result, bool, error) {
	ok, err := t.present(fs.ModeSymlink)
	if err != nil {
		return Result{}, true, err
	}
	if !ok {
		return Result{}, false, nil
	}
	got, err := t.user.Readlink(t.rel)
	if err != nil {
		return Result{}, true, targetError(t.shown, err)
	}
	if got != dest {
		return Result{}, true, contract.Errorf(contract.CodeTargetConflict, "%s already exists and links to %s, not %s", t.shown, got, dest)
	}
	return already(t), true, nil
}

// Hardlink makes the target a hard link to the source file.
//
// The link is the source's own inode, so it is never made read-only or
// given to the user: changing its mode or owner would change the source's,
// and the source is never modified. Read-only for a hard link means what
// the source's permissions already say.
func (s *Stager) Hardlink(ctx context.Context, cmd contract.Command) (Result, error) {
	rel, fi, err := s.linkSource(ctx, cmd)
	if err != nil {
		return Result{}, err
	}
	if fi.IsDir() {
		return Result{}, contract.Errorf(contract.CodeInvalidPath, "%s is a directory; local_hardlink links files only (use local_copy or local_symlink for a directory)", cmd.LocalPathOnStorage)
	}
	t, err := s.linkTarget(ctx, cmd)
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	if r, done, err := t.settle(0); done {
		if err == nil {
			r, err = t.checkSize(cmd, r, fi.Size())
		}
		return r, err
	}

	_, span := s.Tracer.Start(ctx, "stager.finalize")
	defer span.End()
	// The source is linked by its open descriptor, not by its name, so the
	// inode linked is the one os.Root checked, whatever happens to the path
	// meanwhile.
	in, err := s.Source.OS().OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return Result{}, storage.SourceError(rel, err)
	}
	defer in.Close()
	if st, err := in.Stat(); err != nil || !st.Mode().IsRegular() {
		return Result{}, errors.Join(contract.Errorf(contract.CodeInvalidPath, "%s is no longer a regular file", cmd.LocalPathOnStorage), err)
	}
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(in.Fd())), t.fd, t.name, unix.AT_SYMLINK_FOLLOW)
	if errors.Is(err, fs.ErrExist) {
		return t.settleAfterRace(0)
	}
	if err != nil {
		if errors.Is(err, unix.EXDEV) {
			return Result{}, fmt.Errorf("%w: %w", contract.Errorf(contract.CodeCrossDevice, "%s and the user area %s are on different filesystems; a hard link cannot cross them (use local_copy or local_symlink)", cmd.LocalPathOnStorage, t.shown), err)
		}
		return Result{}, targetError(t.shown, fmt.Errorf("link %s: %w", rel, err))
	}
	if err := s.flush.sync(t.sync.with(t.fd)); err != nil {
		return Result{}, targetError(t.shown, err)
	}
	return Result{Outcome: contract.OutcomeStaged, Bytes: fi.Size(), Files: 1, Message: fmt.Sprintf("hard-linked %s to %s (%s)", t.shown, cmd.LocalPathOnStorage, plural(fi.Size(), "byte"))}, nil
}

// linkSource resolves the source of a link request: a link copies nothing,
// so it has no checksum to compare.
func (s *Stager) linkSource(ctx context.Context, cmd contract.Command) (string, fs.FileInfo, error) {
	if err := noChecksum(cmd); err != nil {
		return "", nil, err
	}
	return s.resolve(ctx, cmd)
}

// linkTarget opens the target of a link request.
func (s *Stager) linkTarget(ctx context.Context, cmd contract.Command) (*target, error) {
	_, span := s.Tracer.Start(ctx, "stager.check")
	defer span.End()
	return s.openTarget(cmd)
}
