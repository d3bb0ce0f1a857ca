// Package stage carries out the stager's filesystem methods: copy a file or
// a tree into a user's area, link to the source with a symbolic or a hard
// link, and check a source before a download link is issued for it.
//
// Every path goes through os.Root, on the storage (libs/storage) and on the
// user area, so no request can reach outside either. Results appear
// atomically: they are built under a temporary name in the destination
// directory and renamed into place, so a crash at any moment leaves no
// partial result, and the leftovers are removed when the request is tried
// again.
package stage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/stager/internal/ownership"
)

// Stager stages requests from one storage into one user area.
type Stager struct {
	Source *storage.Root
	// Users is the user area: each user's items go below <Users>/<username>.
	Users *os.Root
	// Workers bounds the files of a tree copied at once (default 4).
	Workers int
	// Owners gives staged data to its user (nil: it keeps the stager's
	// owner).
	Owners *ownership.Owners
	// ProgressEvery is the interval of progress reports (default 1 s).
	ProgressEvery time.Duration
	// Tracer makes the resolve, check, copy and finalize spans.
	Tracer trace.Tracer
	// NoSync leaves a copy's data and its rename to the kernel's writeback
	// instead of waiting for them to reach the disk. A process that dies
	// loses nothing either way; a machine that crashes soon after a copy
	// may come back with the copy under its final name but its data
	// missing, which a retry of the request then finds already present.
	NoSync bool

	// flush makes copies and renames durable, many at a time (flush.go).
	flush flusher

	// afterChunk, when set (by tests), runs after each chunk of a file is
	// copied: a test changes the source there, mid-copy.
	afterChunk func(src string)
}

// Result is what a successful staging did.
type Result struct {
	Outcome contract.Outcome
	Bytes   int64
	Files   int64
	// Adler32 is the copy's checksum, when one was asked for.
	Adler32 string
	// Message tells a person what happened.
	Message string
}

// ProgressFunc receives the progress of a long copy, at most about once a
// second, from a single goroutine.
type ProgressFunc func(contract.Progress)

// tempPrefix starts the name of every temporary entry in a user area.
const tempPrefix = ".staging-"

// tempName is the temporary name of request id's result. It depends on the
// id only, so a redelivery of the request finds and removes what a crashed
// attempt left.
func tempName(id string) string { return tempPrefix + id + ".tmp" }

// Modes of the parent directories the stager creates in a user area, and of
// the copied data (read-only: the staged copy is a snapshot of the source).
const (
	dirMode      = 0o755
	readOnlyFile = 0o400
	readOnlyDir  = 0o500
)

// target is where a request's result goes: a directory inside the user's
// area (opened as a root of its own) and a name in it.
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

func (t *target) close() error {
	return errors.Join(t.dirf.Close(), t.user.Close())
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

// resolve finds the source of cmd on the storage.
func (s *Stager) resolve(ctx context.Context, cmd contract.Command) (string, fs.FileInfo, error) {
	_, span := s.Tracer.Start(ctx, "stager.resolve")
	defer span.End()
	rel, fi, err := s.Source.Stat(cmd.LocalPathOnStorage)
	if err != nil {
		span.RecordError(err)
		return "", nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return "", nil, contract.Errorf(contract.CodeInvalidPath, "%s is neither a file nor a directory", cmd.LocalPathOnStorage)
	}
	return rel, fi, nil
}

// Symlink makes a symbolic link at the target pointing at the source's
// absolute path on disk. The link is never followed to change the source:
// no mode or owner is set through it.
func (s *Stager) Symlink(ctx context.Context, cmd contract.Command) (Result, error) {
	if err := noChecksum(cmd); err != nil {
		return Result{}, err
	}
	rel, _, err := s.resolve(ctx, cmd)
	if err != nil {
		return Result{}, err
	}
	dest := filepath.Join(s.Source.Dir(), filepath.FromSlash(rel))
	_, span := s.Tracer.Start(ctx, "stager.check")
	t, err := s.openTarget(cmd)
	span.End()
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	if r, done, err := t.linkPresent(dest); done {
		return r, err
	}
	_, span = s.Tracer.Start(ctx, "stager.finalize")
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

func already(t *target) Result {
	return Result{Outcome: contract.OutcomeAlreadyPresent, Message: fmt.Sprintf("already present at %s; nothing was changed", t.shown)}
}

// Check validates the source of a direct download and returns its path
// relative to the storage.
func (s *Stager) Check(ctx context.Context, cmd contract.Command) (string, fs.FileInfo, error) {
	if err := noChecksum(cmd); err != nil {
		return "", nil, err
	}
	if err := contract.ValidateUsername(cmd.Username); err != nil {
		return "", nil, err
	}
	return s.resolve(ctx, cmd)
}

// noChecksum refuses an expected_adler32 for a method that copies nothing
// it could check (a link, a download link): a checksum asked for is never
// silently ignored.
func noChecksum(cmd contract.Command) error {
	if cmd.ExpectedAdler32 == "" {
		return nil
	}
	return contract.Errorf(contract.CodeMalformed, "expected_adler32 is checked by local_copy only: %s copies nothing to check", cmd.Method)
}
