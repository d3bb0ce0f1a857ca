package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/stager/internal/ownership"
)

// target is where a request's result goes: a directory inside the user's
// area (opened as a root of its own) and a name in it.
//
// Its life, in the order of this file: openTarget, settle (already
// there?), checkSpace, withTemp (the temporary entry is made), finalize
// (renamed into place), close. removeTemp clears what a failed or crashed
// attempt left; targetError gives the contract's code to what went wrong
// on the way.
type target struct {
	user *os.Root
	// dirf is dir, opened once through user: what is made in dir (the
	// temporary entry, the renamed result) is made by its name in dirf,
	// not by a path resolved again component by component.
	dirf   *os.File
	fd     int // dirf's descriptor
	sync   syncHandle
	dir    string // relative to the user's area; "." for the area itself
	name   string
	rel    string // dir/name
	shown  string // username/rel, for messages
	tmpRel string // dir/<temporary name>
	owner  ownership.ID
	own    bool // give what is made to owner
	// username owns the area; marker is the in-flight marker of the
	// temporary entry, once tracked (see leftovers.go).
	username string
	marker   string
}

// openTarget creates the user's area and the parents of relative_path as
// needed and returns where the result of cmd goes. A leftover of an earlier
// attempt of the same request is removed by the copy (see withTemp).
func (s *Stager) openTarget(cmd contract.Command) (*target, error) {
	if err := contract.ValidateUsername(cmd.Username); err != nil {
		return nil, err
	}
	if err := contract.ValidateRelativePath(cmd.RelativePath); err != nil {
		return nil, err
	}
	owner, own, err := s.Owners.Lookup(cmd.Username)
	if err != nil {
		return nil, err
	}
	// The area and the parents usually exist already: open them first, and
	// make them only when they are missing, so a request into an existing
	// directory makes no mkdir and no stat per component.
	user, err := s.Users.OpenRoot(cmd.Username)
	if errors.Is(err, fs.ErrNotExist) {
		if err := mkdir(s.Users, cmd.Username, owner, own); err != nil {
			return nil, targetError(cmd.Username, err)
		}
		user, err = s.Users.OpenRoot(cmd.Username)
	}
	if err != nil {
		return nil, targetError(cmd.Username, err)
	}
	if err := s.ownArea(user, cmd.Username); err != nil {
		user.Close()
		return nil, err
	}
	rel := path.Clean(cmd.RelativePath)
	t := &target{user: user, dir: path.Dir(rel), name: path.Base(rel), rel: rel, shown: cmd.Username + "/" + rel, owner: owner, own: own, username: cmd.Username}
	t.tmpRel = path.Join(t.dir, tempName(cmd.ID))
	if strings.HasPrefix(t.name, tempPrefix) {
		user.Close()
		return nil, contract.Errorf(contract.CodeInvalidPath, "relative_path %q may not start with %q: that name is the stager's", cmd.RelativePath, tempPrefix)
	}
	if t.dirf, err = t.openDir(); err != nil {
		user.Close()
		return nil, targetError(t.shown, err)
	}
	t.fd = int(t.dirf.Fd())
	if t.sync, err = newSyncHandle(t.fd); err != nil {
		t.close()
		return nil, targetError(t.shown, err)
	}
	return t, nil
}

// ownArea refuses a user's area that is not a directory of its own below
// the user areas' root: OpenRoot follows a symbolic link that stays inside
// that root, so <area>/victor -> bob would stage victor's request into bob's
// area. The name is checked without following links, and the root opened
// must be that same directory, so a link swapped in between is caught too.
func (s *Stager) ownArea(user *os.Root, username string) error {
	fi, err := s.Users.Lstat(username)
	if err != nil {
		return targetError(username, err)
	}
	if !fi.IsDir() {
		return contract.Errorf(contract.CodeOutsideUserArea, "the user area of %s is a %s, not a directory of its own; refusing to stage into it", username, kind(fi.Mode()))
	}
	opened, err := user.Stat(".")
	if err != nil {
		return targetError(username, err)
	}
	if !os.SameFile(fi, opened) {
		return contract.Errorf(contract.CodeOutsideUserArea, "the user area of %s changed while it was opened; refusing to stage into it", username)
	}
	return nil
}

// openDir opens the target's directory, making it and its parents first
// when it is missing. O_NONBLOCK spares the fcntl calls os.File makes to try
// a descriptor on the poller; it changes nothing for a directory.
func (t *target) openDir() (*os.File, error) {
	const flags = os.O_RDONLY | syscall.O_DIRECTORY | syscall.O_NONBLOCK
	d, err := t.user.OpenFile(t.dir, flags, 0)
	if !errors.Is(err, fs.ErrNotExist) {
		return d, err
	}
	if err := t.mkdirParents(); err != nil {
		return nil, err
	}
	return t.user.OpenFile(t.dir, flags, 0)
}

// mkdir makes directory name in r unless it exists, and gives a new one to
// owner when own is set, so the user can manage what is staged below it.
func mkdir(r *os.Root, name string, owner ownership.ID, own bool) error {
	err := r.Mkdir(name, dirMode)
	if errors.Is(err, fs.ErrExist) {
		// Stat follows a symbolic link only inside the root.
		fi, err := r.Stat(name)
		if err == nil && !fi.IsDir() {
			err = &fs.PathError{Op: "mkdir", Path: name, Err: syscall.ENOTDIR}
		}
		return err
	}
	if err != nil || !own {
		return err
	}
	return r.Lchown(name, owner.UID, owner.GID)
}

// mkdirParents makes the parent directories of the target, one at a time,
// so each new one can be given to the user.
func (t *target) mkdirParents() error {
	if t.dir == "." {
		return nil
	}
	p := ""
	for part := range strings.SplitSeq(t.dir, "/") {
		p = path.Join(p, part)
		if err := mkdir(t.user, p, t.owner, t.own); err != nil {
			return err
		}
	}
	return nil
}

// lstat looks at name in the target's directory without following a
// symbolic link: a single name below a directory os.Root opened, so it
// cannot lead anywhere else.
func (t *target) lstat(name string) (fs.FileMode, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(t.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return 0, nil
	case unix.S_IFDIR:
		return fs.ModeDir, nil
	case unix.S_IFLNK:
		return fs.ModeSymlink, nil
	}
	return fs.ModeIrregular, nil
}

// present reports whether the target already exists. It is present when it
// is the same kind of thing the request would make (want: a regular file, a
// directory or a symbolic link); anything else in the way is a conflict.
func (t *target) present(want fs.FileMode) (bool, error) {
	mode, err := t.lstat(t.name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, targetError(t.shown, err)
	case mode != want:
		return false, contract.Errorf(contract.CodeTargetConflict, "%s already exists and is a %s, not a %s", t.shown, kind(mode), kind(want))
	}
	return true, nil
}

// settle is present for the other methods: done with already_present when
// the target is there and of kind want, with an error when something else
// is in the way.
func (t *target) settle(want fs.FileMode) (Result, bool, error) {
	ok, err := t.present(want)
	if err != nil {
		return Result{}, true, err
	}
	if !ok {
		return Result{}, false, nil
	}
	return already(t), true, nil
}

// checkSize refuses, with target_conflict, a file present at the target
// whose size is not the source's: it is evidently something else. Through
// the seed's /stage_data the seed's success stands, and its message says
// that the two differ.
func (t *target) checkSize(cmd contract.Command, present Result, size int64) (Result, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(t.fd, t.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return Result{}, targetError(t.shown, err)
	}
	if st.Size == size {
		return present, nil
	}
	differs := fmt.Sprintf("%s already exists and differs from the source: it holds %s, the source %s", t.shown, plural(st.Size, "byte"), plural(size, "byte"))
	if cmd.Origin == contract.OriginStageData {
		present.Message = differs + "; nothing was changed"
		return present, nil
	}
	return Result{}, contract.Errorf(contract.CodeTargetConflict, "%s", differs)
}

func (t *target) settleAfterRace(want fs.FileMode) (Result, error) {
	r, done, err := t.settle(want)
	if !done && err == nil {
		return Result{}, fmt.Errorf("%s appeared and vanished while being linked", t.shown)
	}
	return r, err
}

func already(t *target) Result {
	return Result{Outcome: contract.OutcomeAlreadyPresent, Message: fmt.Sprintf("already present at %s; nothing was changed", t.shown)}
}

func kind(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeSymlink:
		return "symbolic link"
	}
	return "special file"
}

// checkSpace refuses a copy the user area has no room for, before anything
// is written.
func (t *target) checkSpace(p *plan) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(t.fd, &st); err != nil {
		return fmt.Errorf("free space of %s: %w", t.shown, err)
	}
	block := max(st.Bsize, 512)
	blocks := func(size int64) int64 { return (size + block - 1) / block * block }
	need := blocks(p.size)
	for _, d := range p.dirs {
		need += block
		for _, f := range d.files {
			need += blocks(f.size)
		}
	}
	if avail := int64(st.Bavail) * block; need > avail {
		return contract.Errorf(contract.CodeNoSpace, "%s needs %d bytes but the user area has %d free", t.shown, need, avail)
	}
	return nil
}

// tempPrefix starts the name of every temporary entry in a user area.
const tempPrefix = ".staging-"

// tempName is the temporary name of request id's result. It depends on the
// id only, so a redelivery of the request finds and removes what a crashed
// attempt left.
func tempName(id string) string { return tempPrefix + id + ".tmp" }

// withTemp runs create, which makes the temporary entry and fails when its
// name is taken; when it is, by a leftover of an earlier attempt of the
// same request (the name depends on the request id only), the leftover is
// removed and create runs again. A leftover is rare: found this way, it
// costs no look beforehand.
func (t *target) withTemp(create func() error) error {
	err := create()
	if !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := removeTemp(t.user, t.tmpRel); err != nil {
		return targetError(t.shown, err)
	}
	return create()
}

// finalize renames the temporary result into place, never over something
// that appeared meanwhile (then the request is settled as for an existing
// target), and, when f is set, makes the rename durable through f (the
// data was synced before, by copyFile or the tree's flush).
func (t *target) finalize(want fs.FileMode, f *flusher) (Result, bool, error) {
	err := unix.Renameat2(t.fd, path.Base(t.tmpRel), t.fd, t.name, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// The filesystem cannot refuse to replace (NFS): plain rename.
		err = unix.Renameat(t.fd, path.Base(t.tmpRel), t.fd, t.name)
	}
	if err != nil {
		err = &os.LinkError{Op: "rename", Old: t.tmpRel, New: t.rel, Err: err}
	}
	if errors.Is(err, fs.ErrExist) {
		if rerr := removeTemp(t.user, t.tmpRel); rerr != nil {
			return Result{}, true, rerr
		}
		return t.settle(want)
	}
	if err != nil {
		return Result{}, true, errors.Join(targetError(t.shown, err), removeTemp(t.user, t.tmpRel))
	}
	if f == nil {
		return Result{}, false, nil
	}
	if err := f.sync(t.sync.with(t.fd)); err != nil {
		return Result{}, true, targetError(t.shown, err)
	}
	return Result{}, false, nil
}

func (t *target) close() error {
	return errors.Join(t.dirf.Close(), t.user.Close())
}

// removeTemp removes a temporary entry and everything below it. A tree
// left by a crash may already be read-only, so its directories are made
// writable first.
func removeTemp(r *os.Root, name string) error {
	fi, err := r.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect leftover %s: %w", name, err)
	}
	if fi.IsDir() {
		err := fs.WalkDir(r.FS(), name, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				err = r.Chmod(p, 0o700)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("unlock leftover %s: %w", name, err)
		}
	}
	if err := r.RemoveAll(name); err != nil {
		return fmt.Errorf("remove leftover %s: %w", name, err)
	}
	return nil
}

// targetError maps an error from writing in the user area to the contract's
// codes (the table of classes is in docs/messages.md). A code is a verdict:
// the request's own fault (a path the filesystem refuses, something in the
// way) or a fault of the site that a retry seconds later cannot cure (no
// space, a read-only or forbidden area). Errors without a code (EIO, a
// stale NFS handle) may pass on a retry.
func targetError(what string, err error) error {
	code, detail := contract.Code(""), ""
	switch {
	case storage.IsEscape(err), errors.Is(err, syscall.ELOOP):
		code, detail = contract.CodeOutsideUserArea, "leads outside the user's area"
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.EINVAL):
		code, detail = contract.CodeInvalidPath, "is a name the user area's filesystem refuses (too long or invalid)"
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		code, detail = contract.CodeNoSpace, "does not fit: no space left on the user area, or over its quota or file size limit"
	case errors.Is(err, syscall.EXDEV):
		code, detail = contract.CodeCrossDevice, "is on another filesystem than the source"
	case errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENOTEMPTY), errors.Is(err, syscall.EISDIR):
		code, detail = contract.CodeTargetConflict, "is in the way of something already there"
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		code, detail = contract.CodeIOError, "cannot be written: permission denied"
	case errors.Is(err, syscall.EMLINK):
		code, detail = contract.CodeIOError, "cannot be made: too many links"
	default:
		return fmt.Errorf("write %s: %w", what, err)
	}
	return fmt.Errorf("%w: %w", contract.Errorf(code, "%s %s", what, detail), err)
}
