package stage

import (
	"context"
	"errors"
	"fmt"
	"hash"
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

// chunk is how much of a file is copied between two progress updates.
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
		if err == nil && !p.tree {
			r, err = t.checkSize(cmd, r, p.size)
		}
		// The copy is not made: nothing finds a leftover of an earlier
		// attempt in its way, so it is looked for here.
		if rerr := removeTemp(t.user, t.tmpRel); rerr != nil {
			return Result{}, targetError(t.shown, rerr)
		}
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
	if !p.tree && p.size <= chunk {
		// One chunk, one call: its progress could only say nothing or
		// all of it. No meter, no goroutine and ticker to start and
		// stop for each small request.
		progress = nil
	}
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
// resolution of its whole path. A directory read through os.Root makes
// that fstatat (AT_SYMLINK_NOFOLLOW) for every entry as it reads it, so
// the entry's Info costs no further call.
func (s *Stager) planDir(p *plan, d *os.Root, sub string) error {
	entries, err := fs.ReadDir(d.FS(), ".")
	if err != nil {
		return err
	}
	p.dirs = append(p.dirs, dir{sub: sub})
	this := len(p.dirs) - 1
	var subdirs []string
	for _, e := range entries {
		fi, err := e.Info()
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
		var adler string
		err := t.withTemp(func() (err error) {
			adler, err = s.copyFrom(ctx, t, s.Source.OS(), p.top, copyJob{src: p.top, dir: t.fd, dst: path.Base(t.tmpRel)}, m, sum, !s.NoSync)
			return err
		})
		return adler, err
	}
	err := t.withTemp(func() error {
		if err := t.user.Mkdir(t.tmpRel, 0o700); err != nil {
			return targetError(t.shown, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, d := range p.dirs[1:] {
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
// once on each side: each file is then opened by its name alone, with a
// raw openat relative to the directory, rather than by a path resolved
// again component by component.
func (s *Stager) copyUnit(ctx context.Context, t *target, srcTop, dstTop *os.Root, top string, u dir, m *meter) error {
	src := path.Join(top, u.sub)
	from, err := openDir(srcTop, u.sub)
	if err != nil {
		return storage.SourceError(src, err)
	}
	defer from.Close()
	to, err := openDir(dstTop, u.sub)
	if err != nil {
		return targetError(t.shown, err)
	}
	defer to.Close()
	for _, f := range u.files {
		j := copyJob{src: path.Join(src, f.name), dir: int(to.Fd()), dst: f.name}
		if f.link {
			// Followed from the storage's root, through os.Root: it
			// may lead out of its directory, never out of the storage.
			_, err = s.copyFrom(ctx, t, s.Source.OS(), j.src, j, m, false, false)
		} else {
			_, err = s.copyAt(ctx, t, int(from.Fd()), f.name, j, m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openDir opens directory name of r. O_NONBLOCK spares the fcntl calls
// os.File makes to try a descriptor on the poller (and makes Fd free of
// them); it changes nothing for a directory.
func openDir(r *os.Root, name string) (*os.File, error) {
	return r.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
}

// copyJob is where one file goes: src names its source in messages,
// relative to the storage; dst is the new file's name in the directory
// open as dir.
type copyJob struct {
	src string
	dir int
	dst string
}

// copyFrom copies the file name of r (a path resolved through os.Root).
func (s *Stager) copyFrom(ctx context.Context, t *target, r *os.Root, name string, j copyJob, m *meter, sum, sync bool) (string, error) {
	// O_NONBLOCK: should the file have been swapped for a FIFO since the
	// plan, opening it must not hang. It changes nothing for regular
	// files, and spares the fcntl calls os.File makes to try the poller.
	in, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", storage.SourceError(j.src, err)
	}
	defer in.Close()
	return s.copyFile(ctx, t, int(in.Fd()), j, m, sum, sync)
}

// copyAt copies the file name of the directory open as dir, a directory
// of a tree opened through os.Root. The name was read from that directory,
// so it is a single component, and O_NOFOLLOW refuses a symbolic link put
// in its place since the plan: nothing outside the directory is reached.
// A raw descriptor rather than an os.File: no poller registration (an
// epoll_ctl that fails for every regular file), no finalizer.
func (s *Stager) copyAt(ctx context.Context, t *target, dir int, name string, j copyJob, m *meter) (string, error) {
	in, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ELOOP) {
		return "", contract.Errorf(contract.CodeInvalidPath, "%s is no longer a regular file: a symbolic link replaced it", j.src)
	}
	if err != nil {
		return "", storage.SourceError(j.src, &fs.PathError{Op: "openat", Path: j.src, Err: err})
	}
	defer unix.Close(in)
	return s.copyFile(ctx, t, in, j, m, false, false)
}

// create makes name in the directory open as dir (opened through os.Root),
// read-only from the start: the mode applies to later opens, not to the
// descriptor returned. name is a single component and O_NOFOLLOW|O_EXCL
// refuse anything already there, a symbolic link included, so nothing
// outside can be reached.
func create(dir int, name string) (int, error) {
	fd, err := unix.Openat(dir, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, readOnlyFile)
	if err != nil {
		return -1, &fs.PathError{Op: "openat", Path: name, Err: err}
	}
	return fd, nil
}

// copyFile copies the open source file in to a new file, verifies its
// size, and leaves it read-only. The copy is fsynced when sync is set (a
// tree is synced once as a whole).
func (s *Stager) copyFile(ctx context.Context, t *target, in int, j copyJob, m *meter, sum, sync bool) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("copy %s: %w", j.src, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(in, &st); err != nil {
		return "", storage.SourceError(j.src, &fs.PathError{Op: "fstat", Path: j.src, Err: err})
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return "", contract.Errorf(contract.CodeInvalidPath, "%s is no longer a regular file", j.src)
	}
	out, err := create(j.dir, j.dst)
	if err != nil {
		return "", targetError(t.shown, err)
	}
	closed := false
	defer func() {
		if !closed {
			unix.Close(out)
		}
	}()
	var h hash.Hash32
	if sum {
		h = adler32.New()
	}
	if err := s.copyData(ctx, t, in, out, st.Size, j.src, m, h, sync); err != nil {
		return "", err
	}
	if sync {
		if err := s.syncFile(t, out, st.Size); err != nil {
			return "", targetError(t.shown, fmt.Errorf("%s: %w", j.dst, err))
		}
	}
	// Through the descriptor, not the name: nothing else can be changed.
	if t.own {
		if err := unix.Fchown(out, t.owner.UID, t.owner.GID); err != nil {
			return "", targetError(t.shown, &fs.PathError{Op: "fchown", Path: j.dst, Err: err})
		}
	}
	closed = true
	if err := unix.Close(out); err != nil {
		return "", targetError(t.shown, &fs.PathError{Op: "close", Path: j.dst, Err: err})
	}
	m.files.Add(1)
	if !sum {
		return "", nil
	}
	return fmt.Sprintf("%08x", h.Sum32()), nil
}

// bufSize is the buffer of a copy through user memory: with a checksum,
// or where copy_file_range cannot copy. Without a checksum a file of a few
// KiB, most of a tree, takes a single copy_file_range (measured faster than
// one read and one write through a buffer).
const bufSize = 256 << 10

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// copyData copies size bytes, the source's size when it was opened, from
// in to out, in chunks between which progress is counted and ctx checked,
// and fails when the source turns out to hold another number of bytes.
// The last request of a copy asks for one byte more than is left: a call
// short of it is the source's end, seen without a further call, and a
// source that grew gives that byte. With h set, the data is also added to
// h.
func (s *Stager) copyData(ctx context.Context, t *target, in, out int, size int64, src string, m *meter, h hash.Hash32, sync bool) error {
	c := &copier{in: in, out: out, h: h}
	defer c.release()
	if h != nil {
		c.take()
	}
	var n int64
	for {
		left := size - n
		enough := min(left, chunk)
		want := enough
		if left <= chunk {
			want++ // the last request: see above
		}
		got, err := c.copy(want, enough)
		if sync && got > 0 && left > chunk {
			// Start writing the chunk back now, without waiting: the
			// disk works while the next chunk is copied, and the final
			// fsync has only the tail left to wait for.
			_ = unix.SyncFileRange(out, n, got, unix.SYNC_FILE_RANGE_WRITE)
		}
		n += got
		m.bytes.Add(got)
		if err != nil {
			return targetError(t.shown, fmt.Errorf("copy %s: %w", src, err))
		}
		if got < enough || left <= chunk {
			break
		}
		if s.afterChunk != nil {
			s.afterChunk(src)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("copy %s: %w", src, err)
		}
	}
	if n != size {
		return fmt.Errorf("copy %s: %d bytes copied but the source had %d: it changed during the copy", src, n, size)
	}
	return nil
}

// copier moves data from in to out with copy_file_range, in the kernel,
// or through buf when it is set: for a checksum, and where the filesystems
// cannot copy in the kernel.
type copier struct {
	in, out int
	buf     *[]byte     // from bufs
	h       hash.Hash32 // also given the data, when set
	copied  bool        // copy_file_range has copied something
}

func (c *copier) take() { c.buf = bufs.Get().(*[]byte) }

func (c *copier) release() {
	if c.buf != nil {
		bufs.Put(c.buf)
	}
}

// copy copies until enough bytes are copied or the source ends, asking for
// want (enough or one more) in all. Once enough are copied, a call short
// of what it asked for is the source's end.
func (c *copier) copy(want, enough int64) (int64, error) {
	var done int64
	for {
		n, asked, err := c.step(want - done)
		done += n
		if err != nil || n == 0 || done == want || done >= enough && n < asked {
			return done, err
		}
	}
}

// step makes one copy of at most ask bytes, and says how many it asked
// for: fewer through a buffer smaller than ask.
func (c *copier) step(ask int64) (n, asked int64, err error) {
	for {
		if c.buf == nil {
			n, err := unix.CopyFileRange(c.in, nil, c.out, nil, int(ask), 0)
			if !c.copied && (err == nil && n == 0 || noCopyRange(err)) {
				// Nothing copied: the filesystems may not copy in
				// the kernel (before Linux 5.19 some say so with 0
				// bytes rather than an error).
				c.take()
				continue
			}
			if errors.Is(err, unix.EINTR) {
				continue
			}
			c.copied = c.copied || n > 0
			return int64(n), ask, err
		}
		b := *c.buf
		b = b[:min(int64(len(b)), ask)]
		n, err := unix.Read(c.in, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n <= 0 {
			return 0, int64(len(b)), err
		}
		if c.h != nil {
			c.h.Write(b[:n])
		}
		return int64(n), int64(len(b)), writeAll(c.out, b[:n])
	}
}

// noCopyRange reports whether copy_file_range failed without copying,
// because it cannot copy between these files (the errors Go's own
// io.Copy falls back on).
func noCopyRange(err error) bool {
	switch err {
	case unix.ENOSYS, unix.EXDEV, unix.EINVAL, unix.EIO, unix.EOPNOTSUPP, unix.EPERM:
		return true
	}
	return false
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		b = b[n:]
	}
	return nil
}

// groupSyncMax is the largest single file made durable by the shared
// flush (a syncfs of the whole filesystem, flush.go); a larger one is
// fsynced on its own, so that its tail is not written out on the way of
// the small copies that share a flush, nor theirs on its way.
const groupSyncMax = chunk

// syncFile makes a copied file of size bytes durable before it is named:
// small files through the shared flush, then, unless that flush was an
// fsync of this very file, a check of the file's own writeback errors
// (sync_file_range waits for pages already clean and reports an error
// since out was opened, like fsync, without another disk cache flush);
// larger ones with fsync.
func (s *Stager) syncFile(t *target, out int, size int64) error {
	if size > groupSyncMax {
		if err := unix.Fsync(out); err != nil {
			return fmt.Errorf("fsync: %w", err)
		}
		return nil
	}
	if fsynced, err := s.flush.join(t.sync.with(out)); err != nil || fsynced {
		return err
	}
	const wait = unix.SYNC_FILE_RANGE_WAIT_BEFORE | unix.SYNC_FILE_RANGE_WRITE | unix.SYNC_FILE_RANGE_WAIT_AFTER
	if err := unix.SyncFileRange(out, 0, 0, wait); err != nil {
		return fmt.Errorf("write back: %w", err)
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

// startMeter starts counting; it reports to fn, when set, from a goroutine
// of its own until stop.
func startMeter(fn ProgressFunc, every time.Duration, total contract.Progress) *meter {
	m := &meter{total: total, done: make(chan struct{}), finished: make(chan struct{})}
	if fn == nil {
		close(m.finished)
		return m
	}
	go func() {
		defer close(m.finished)
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
