package stage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
)

// Hardlink makes the target a hard link to the source file.
//
// The link is the source's own inode, so it is never made read-only or
// given to the user: changing its mode or owner would change the source's,
// and the source is never modified. Read-only for a hard link means what
// the source's permissions already say.
func (s *Stager) Hardlink(ctx context.Context, cmd contract.Command) (Result, error) {
	if err := noChecksum(cmd); err != nil {
		return Result{}, err
	}
	rel, fi, err := s.resolve(ctx, cmd)
	if err != nil {
		return Result{}, err
	}
	if fi.IsDir() {
		return Result{}, contract.Errorf(contract.CodeInvalidPath, "%s is a directory; local_hardlink links files only (use local_copy or local_symlink for a directory)", cmd.LocalPathOnStorage)
	}
	_, span := s.Tracer.Start(ctx, "stager.check")
	t, err := s.openTarget(cmd)
	span.End()
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

	_, span = s.Tracer.Start(ctx, "stager.finalize")
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

func (t *target) settleAfterRace(want fs.FileMode) (Result, error) {
	r, done, err := t.settle(want)
	if !done && err == nil {
		return Result{}, fmt.Errorf("%s appeared and vanished while being linked", t.shown)
	}
	return r, err
}
