package stage

import (
	"context"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
)

// chunk is how much of a file is copied between two progress updates. The
// copy of a chunk stays on the kernel's copy_file_range path: io.CopyN
// hands *os.File.ReadFrom an *io.LimitedReader, which it knows.
const chunk = 16 << 20

// plan is what a copy will do, known before anything is written.
type plan struct {
	tree  bool
	top   string // the file or the top of the tree, relative to the storage
	size  int64  // of the file, when not a tree
	dirs  []dir  // of a tree, parents first: the top (".") first
	files int64
	bytes int64
}

// dir is a directory of a tree and the files in it.
type dir struct {
	sub   string // relative to the top of the tree
	files []file
}

type file struct {
	name string // in its directory
	size int64
	// link: a symbolic link, followed from the storage's root (it may lead
	// out of its directory).
	link bool
}

// unitFiles bounds the files of a directory one worker copies in one go:
// each worker opens the directories it copies in, on both sides, once per
// unit, and a large directory is still shared between workers.
const unitFiles = 256

// Copy copies the source file or directory tree to the target and leaves
// the result read-only: files 0400, directories 0500.
func (s *Stager) Copy(ctx context.Context, cmd contract.Command, progress ProgressFunc) (Result, error) {
	rel, fi, err := s.resolve(ctx, cmd)
	if err != nil {
		return Result{}, err
	}
	if fi.IsDir() && cmd.ExpectedAdler32 != "" {
		// Refused before anything is copied: a tree has no one checksum
		// to compare with.
		return Result{}, contract.Errorf(contract.CodeMalformed, "expected_adler32 applies to a single file, and %s is a directory", cmd.LocalPathOnStorage)
	}

	_, span := s.Tracer.Start(ctx, "stager.check")
	t, p, err := s.prepareCopy(cmd, rel, fi)
	span.End()
	if err != nil || t == nil {
		return Result{}, err
	}
	defer t.close()
	if r, done, err := t.settle(p.kind()); done {
		return r, err
	}
	if err := t.checkSpace(p); err != nil {
		return Result{}, err
	}
	if p.tree || p.size > trackAbove {
		if err := s.track(cmd.ID, t); err != nil {
			return Result{}, err
		}
		defer s.untrack(t)
	}

	cctx, span := s.Tracer.Start(ctx, "stager.copy")
	m := startMeter(progress, s.progressEvery(), contract.Progress{BytesTotal: p.bytes, FilesTotal: p.files})
	sum, err := s.copyPlan(cctx, t, p, m, cmd.ExpectedAdler32 != "")
	m.stop()
	if err != nil {
		span.RecordError(err)
		span.End()
		return Result{}, errors.Join(err, removeTemp(t.user, t.tmpRel))
	}
	span.End()
	if cmd.ExpectedAdler32 != "" && sum != cmd.ExpectedAdler32 {
		return Result{}, errors.Join(
			contract.Errorf(contract.CodeChecksumMismatch, "the copy of %s has adler32 %s, expected %s", cmd.LocalPathOnStorage, sum, cmd.ExpectedAdler32),
			removeTemp(t.user, t.tmpRel))
	}

	_, span = s.Tracer.Start(ctx, "stager.finalize")
	defer span.End()
	if r, done, err := t.finalize(p.kind(), s.syncer()); done {
		return r, err
	}
	return Result{
		Outcome: contract.OutcomeStaged,
		Bytes:   p.bytes,
		Files:   p.files,
		Adler32: sum,
		Message: fmt.Sprintf("staged %s (%s) to %s", plural(p.files, "file"), plural(p.bytes, "byte"), t.shown),
	}, nil
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func (p *plan) kind() fs.FileMode {
	if p.tree {
		return fs.ModeDir
	}
	return 0
}

func (s *Stager) progressEvery() time.Duration {
	if s.ProgressEvery > 0 {
		return s.ProgressEvery
	}
	return time.Second
}

func (s *Stager) workers() int {
	if s.Workers > 0 {
		return s.Workers
	}
	return 4
}

// prepareCopy opens the target and plans the copy.
func (s *Stager) prepareCopy(cmd contract.Command, rel string, fi fs.FileInfo) (*target, *plan, error) {
	p := &plan{top: rel, size: fi.Size(), files: 1, bytes: fi.Size()}
	if fi.IsDir() {
		var err error
		if p, err = s.planTree(rel); err != nil {
			return nil, nil, err
		}
	}
	t, err := s.openTarget(cmd)
	if err != nil {
		return nil, nil, err
	}
	return t, p, nil
}

// planTree lists the directories and files below rel. A symbolic link in
// the tree is followed when it stays on the storage and names a file;
// one leading outside fails the whole request.
func (s *Stager) planTree(rel string) (*plan, error) {
	p := &plan{tree: true, top: rel}
	d, err := s.Source.OS().OpenRoot(rel)
	if err == nil {
		err = s.planDir(p, d, ".")
		d.Close()
	}
	if err != nil {
		if _, ok := errors.AsType[*contract.Error](err); ok {
			return nil, err
		}
		return nil, storage.SourceError(rel, err)
	}
	return p, nil
}

// planDir adds directory sub of the tree, opened as d, and what is below
// it to p. Each entry is looked at by its name in d: one fstatat, not a
// resolution of its whole path.
func (s *Stager) planDir(p *plan, d *os.Root, sub string) error {
	entries, err := fs.ReadDir(d.FS(), ".")
	if err != nil {
		return err
	}
	p.dirs = append(p.dirs, dir{sub: sub})
	this := len(p.dirs) - 1
	var subdirs []string
	for _, e := range entries {
		fi, err := d.Lstat(e.Name())
		if err != nil {
			return err
		}
		f := file{name: e.Name()}
		if fi.Mode().Type() == fs.ModeSymlink {
			src := path.Join(p.top, sub, f.name)
			if fi, err = s.Source.OS().Stat(src); err != nil {
				return err
			}
			if fi.IsDir() {
				return contract.Errorf(contract.CodeInvalidPath, "%s is a symbolic link to a directory; only links to files are followed in a tree", src)
			}
			f.link = true
		}
		switch {
		case fi.IsDir():
			subdirs = append(subdirs, f.name)
		case fi.Mode().IsRegular():
			f.size = fi.Size()
			p.dirs[this].files = append(p.dirs[this].files, f)
			p.files++
			p.bytes += f.size
		default:
			return contract.Errorf(contract.CodeInvalidPath, "%s is neither a file nor a directory", path.Join(p.top, sub, f.name))
		}
	}
	for _, name := range subdirs {
		c, err := d.OpenRoot(name)
		if err != nil {
			return err
		}
		err = s.planDir(p, c, path.Join(sub, name))
		c.Close()
		if err != nil {
			return err
		}
	}
	return nil
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

// copyPlan writes the result under the target's temporary name and returns
// the adler32 of a single file when sum is set.
func (s *Stager) copyPlan(ctx context.Context, t *target, p *plan, m *meter, sum bool) (string, error) {
	if !p.tree {
		return s.copyFile(ctx, t, copyJob{from: s.Source.OS(), name: p.top, src: p.top, to: t, dst: path.Base(t.tmpRel)}, m, sum, !s.NoSync)
	}
	for _, d := range p.dirs {
		if err := t.user.Mkdir(path.Join(t.tmpRel, d.sub), 0o700); err != nil {
			return "", targetError(t.shown, err)
		}
	}
	if err := s.copyTree(ctx, t, p, m); err != nil {
		return "", err
	}
	// Read-only from the bottom up: a directory is filled before it loses
	// its write permission. Renaming it later needs write permission on its
	// parent only.
	for i := len(p.dirs) - 1; i >= 0; i-- {
		d := path.Join(t.tmpRel, p.dirs[i].sub)
		if t.own {
			if err := t.user.Lchown(d, t.owner.UID, t.owner.GID); err != nil {
				return "", targetError(t.shown, err)
			}
		}
		if err := t.user.Chmod(d, readOnlyDir); err != nil {
			return "", targetError(t.shown, err)
		}
	}
	if s.NoSync {
		return "", nil
	}
	// One syncfs (shared with the other copies waiting) instead of an
	// fsync per file: as durable before the rename, much faster for many
	// small files.
	if err := s.flush.sync(t.sync.with(-1)); err != nil {
		return "", targetError(t.shown, err)
	}
	return "", nil
}

// copyTree copies the files of a tree into its directories, already made
// under the temporary name, with a bounded pool of workers. A worker takes
// a unit of files of one directory; workers on different directories do
// not contend for a directory's lock when they create files.
func (s *Stager) copyTree(ctx context.Context, t *target, p *plan, m *meter) error {
	from, err := s.Source.OS().OpenRoot(p.top)
	if err != nil {
		return storage.SourceError(p.top, err)
	}
	defer from.Close()
	to, err := t.user.OpenRoot(t.tmpRel)
	if err != nil {
		return targetError(t.shown, err)
	}
	defer to.Close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	units := make(chan dir)
	var wg sync.WaitGroup
	for range s.workers() {
		wg.Go(func() {
			for u := range units {
				if err := s.copyUnit(ctx, t, from, to, p.top, u, m); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, d := range p.dirs {
		for f := range slices.Chunk(d.files, unitFiles) {
			select {
			case units <- dir{sub: d.sub, files: f}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(units)
	wg.Wait()
	return context.Cause(ctx)
}

// copyUnit copies files of directory u of the tree, opening the directory
// once on each side: each file is then opened by its name alone, rather
// than by a path resolved again component by component.
func (s *Stager) copyUnit(ctx context.Context, t *target, srcTop, dstTop *os.Root, top string, u dir, m *meter) error {
	src := path.Join(top, u.sub)
	from, err := srcTop.OpenRoot(u.sub)
	if err != nil {
		return storage.SourceError(src, err)
	}
	defer from.Close()
	to, err := dstTop.OpenRoot(u.sub)
	if err != nil {
		return targetError(t.shown, err)
	}
	defer to.Close()
	for _, f := range u.files {
		j := copyJob{from: from, name: f.name, src: path.Join(src, f.name), to: rootCreator{to}, dst: f.name}
		if f.link {
			j.from, j.name = s.Source.OS(), j.src
		}
		if _, err := s.copyFile(ctx, t, j, m, false, false); err != nil {
			return err
		}
	}
	return nil
}

// copyJob is one file to copy: name in the directory from (src names it
// in messages, relative to the storage) to dst in the directory to.
type copyJob struct {
	from      *os.Root
	name, src string
	to        creator
	dst       string
}

// creator makes a new file, read-only from the start (the mode applies to
// later opens, not to the descriptor returned), and fails when name exists.
type creator interface {
	create(name string) (*os.File, error)
}

// rootCreator creates in a directory of a tree, opened as a root.
type rootCreator struct{ r *os.Root }

func (c rootCreator) create(name string) (*os.File, error) {
	// O_NONBLOCK changes nothing for a new regular file, and spares the
	// four fcntl calls os.File makes to try it on the poller.
	return c.r.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NONBLOCK, readOnlyFile)
}

// create makes name in the target's directory, already opened through
// os.Root: name is a single component and O_NOFOLLOW|O_EXCL refuse
// anything already there, a symbolic link included, so nothing outside
// can be reached.
func (t *target) create(name string) (*os.File, error) {
	fd, err := unix.Openat(t.fd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, readOnlyFile)
	if err != nil {
		return nil, &fs.PathError{Op: "openat", Path: name, Err: err}
	}
	// Without O_NONBLOCK os.NewFile does not try the poller: one fcntl.
	return os.NewFile(uintptr(fd), name), nil
}

// copyFile copies one file, verifies its size, and leaves it read-only.
// The copy is fsynced when sync is set (a tree is synced once as a whole).
func (s *Stager) copyFile(ctx context.Context, t *target, j copyJob, m *meter, sum, sync bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("copy %s: %w", j.src, err)
	}
	// O_NONBLOCK: should the file have been swapped for a FIFO since the
	// plan, opening it must not hang. It changes nothing for regular files.
	in, err := j.from.OpenFile(j.name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", storage.SourceError(j.src, err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", storage.SourceError(j.src, err)
	}
	if !fi.Mode().IsRegular() {
		return "", contract.Errorf(contract.CodeInvalidPath, "%s is no longer a regular file", j.src)
	}
	out, err := j.to.create(j.dst)
	if err != nil {
		return "", targetError(t.shown, err)
	}
	defer out.Close()

	var src io.Reader = in
	h := adler32.New()
	if sum {
		// Only when a checksum is asked for: wrapping the file leaves the
		// copy_file_range path.
		src = io.TeeReader(in, h)
	}
	var n int64
	for {
		c, err := io.CopyN(out, src, chunk)
		if sync && c > 0 {
			// Start writing the chunk back now, without waiting: the
			// disk works while the next chunk is copied, and the final
			// fsync has only the tail left to wait for.
			_ = unix.SyncFileRange(int(out.Fd()), n, c, unix.SYNC_FILE_RANGE_WRITE)
		}
		n += c
		m.bytes.Add(c)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", targetError(t.shown, fmt.Errorf("copy %s: %w", j.src, err))
		}
		if s.afterChunk != nil {
			s.afterChunk(j.src)
		}
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("copy %s: %w", j.src, err)
		}
	}
	if n != fi.Size() {
		return "", fmt.Errorf("copy %s: %d bytes copied but the source has %d: it changed during the copy", j.src, n, fi.Size())
	}
	if sync {
		if err := s.syncFile(t, out, n); err != nil {
			return "", targetError(t.shown, err)
		}
	}
	// Through the descriptor, not the name: nothing else can be changed.
	if t.own {
		if err := out.Chown(t.owner.UID, t.owner.GID); err != nil {
			return "", targetError(t.shown, err)
		}
	}
	if err := out.Close(); err != nil {
		return "", targetError(t.shown, err)
	}
	m.files.Add(1)
	if !sum {
		return "", nil
	}
	return fmt.Sprintf("%08x", h.Sum32()), nil
}

// groupSyncMax is the largest single file made durable by the shared
// flush (a syncfs of the whole filesystem, flush.go); a larger one is
// fsynced on its own, so that its tail is not written out on the way of
// the small copies that share a flush, nor theirs on its way.
const groupSyncMax = chunk

// syncFile makes a copied file of size bytes durable before it is named:
// small files through the shared flush, then a check of the file's own
// writeback errors (sync_file_range waits for pages already clean and
// reports an error since out was opened, like fsync, without another disk
// cache flush); larger ones with fsync.
func (s *Stager) syncFile(t *target, out *os.File, size int64) error {
	if size > groupSyncMax {
		return out.Sync()
	}
	if err := s.flush.sync(t.sync.with(int(out.Fd()))); err != nil {
		return err
	}
	const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	if err := unix.SyncFileRange(int(out.Fd()), 0, 0, wait); err != nil {
		return fmt.Errorf("write back %s: %w", out.Name(), err)
	}
	return nil
}

// syncer is the flusher that makes renames durable, nil when copies are
// left to the kernel's writeback.
func (s *Stager) syncer() *flusher {
	if s.NoSync {
		return nil
	}
	return &s.flush
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

// meter counts a copy's progress and reports it every interval while it
// moves.
type meter struct {
	bytes, files atomic.Int64
	total        contract.Progress
	done         chan struct{}
	finished     chan struct{}
}

func startMeter(fn ProgressFunc, every time.Duration, total contract.Progress) *meter {
	m := &meter{total: total, done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(m.finished)
		if fn == nil {
			return
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		var last contract.Progress
		for {
			select {
			case <-m.done:
				return
			case <-tick.C:
				p := m.total
				p.BytesDone, p.FilesDone = m.bytes.Load(), m.files.Load()
				if p != last {
					fn(p)
					last = p
				}
			}
		}
	}()
	return m
}

func (m *meter) stop() {
	close(m.done)
	<-m.finished
}
