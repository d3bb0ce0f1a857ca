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
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/storage"
)

// chunk is how much of a file is copied between two progress updates.
const chunk = 16 << 20

// copyJob is one file to copy: src names its source in messages, relative
// to the storage; dst is the new file's name in the directory open as dir.
type copyJob struct {
	src string
	dir int
	dst string
	// sum: the copy's adler32 is computed. sync: the copy is made durable
	// on its own (a tree's files are not: the tree is synced once, as a
	// whole).
	sum, sync bool
	// cat, for a file of a DID: the copy must have the catalogue's size
	// and checksum.
	cat *rucio.File
}

// copyFrom copies the file j.src of the storage (a path resolved through
// os.Root).
func (s *Stager) copyFrom(ctx context.Context, t *target, j copyJob, m *meter) (string, error) {
	// O_NONBLOCK: should the file have been swapped for a FIFO since the
	// plan, opening it must not hang. It changes nothing for regular
	// files, and spares the fcntl calls os.File makes to try the poller.
	in, err := s.Source.OS().OpenFile(j.src, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", storage.SourceError(j.src, err)
	}
	defer in.Close()
	return s.copyFile(ctx, t, int(in.Fd()), j, m)
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
	return s.copyFile(ctx, t, in, j, m)
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
// size, and leaves it read-only, and returns its adler32 when j.sum is
// set.
func (s *Stager) copyFile(ctx context.Context, t *target, in int, j copyJob, m *meter) (string, error) {
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
	if j.cat != nil {
		if err := j.cat.CheckSize(st.Size); err != nil {
			return "", err
		}
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
	c := &copier{src: j.src, in: in, out: out, size: st.Size, sync: j.sync}
	if j.sum || j.cat != nil {
		c.h = adler32.New()
	}
	if err := s.copyData(ctx, t, c, m); err != nil {
		return "", err
	}
	if j.sync {
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
	if c.h == nil {
		return "", nil
	}
	sum := fmt.Sprintf("%08x", c.h.Sum32())
	if j.cat != nil {
		return sum, j.cat.CheckAdler32(sum)
	}
	return sum, nil
}

// bufSize is the buffer of a copy through user memory: with a checksum,
// or where copy_file_range cannot copy. Without a checksum a file of a few
// KiB, most of a tree, takes a single copy_file_range (measured faster than
// one read and one write through a buffer).
const bufSize = 256 << 10

var bufs = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// copyData copies c.size bytes, the source's size when it was opened, in
// chunks between which progress is counted and ctx checked, and fails when
// the source turns out to hold another number of bytes. The last request
// of a copy asks for one byte more than is left: a call short of it is the
// source's end, seen without a further call, and a source that grew gives
// that byte.
func (s *Stager) copyData(ctx context.Context, t *target, c *copier, m *meter) error {
	defer c.release()
	if c.h != nil {
		c.take()
	}
	src, size := c.src, c.size
	var n int64
	for {
		left := size - n
		enough := min(left, chunk)
		want := enough
		if left <= chunk {
			want++ // the last request: see above
		}
		got, err := c.copy(want, enough)
		if c.sync && got > 0 && left > chunk {
			// Start writing the chunk back now, without waiting: the
			// disk works while the next chunk is copied, and the final
			// fsync has only the tail left to wait for.
			_ = unix.SyncFileRange(c.out, n, got, unix.SYNC_FILE_RANGE_WRITE)
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

// copier moves the data of one file from in to out with copy_file_range,
// in the kernel, or through buf when it is set: for a checksum, and where
// the filesystems cannot copy in the kernel.
type copier struct {
	src     string // the source, relative to the storage, for messages
	in, out int
	size    int64       // the source's, when it was opened
	h       hash.Hash32 // also given the data, when set
	sync    bool        // write each full chunk back as soon as it is copied
	buf     *[]byte     // from bufs
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
