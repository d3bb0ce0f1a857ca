package stage

import (
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// flusher is a group commit for the user area. A copy must be on disk
// before it is renamed into place, and the rename before the request is
// reported done; an fsync of each file and of its directory costs a disk
// cache flush each, which small copies cannot share. Instead, a copy
// waiting for durability joins the next flush, and one syncfs of the
// filesystem makes every waiter's writes durable at once: many concurrent
// small copies then wait on one flush between them, not two each.
//
// A flush starts only after all its waiters have joined, so it covers
// everything each of them wrote before joining; a waiter that arrives while
// a flush runs waits for the next one. Any error fails every waiter of the
// flush. A flush with a single waiter fsyncs that waiter's own file or
// directory instead: a syncfs also writes back whatever else is dirty on
// the filesystem, which a lone copy need not wait for. The zero flusher is
// ready to use.
type flusher struct {
	mu sync.Mutex
	// busy: a flush is running; next collects the waiters of the one
	// after it (nil: none yet).
	busy bool
	next *flush

	// syncfs and fsync are unix.Syncfs and unix.Fsync; tests replace
	// them.
	syncfs, fsync func(fd int) error
}

// flush is one syncfs per filesystem its waiters wrote to.
type flush struct {
	// fds holds, per filesystem (st_dev), the descriptor of the waiter
	// opened first: syncfs reports a writeback error that happened on the
	// filesystem since the descriptor it is given was opened, so the
	// oldest one covers every waiter's writes.
	fds     map[uint64]syncHandle
	waiters int
	alone   int           // the one waiter's own descriptor, while it is alone (-1: none)
	lead    chan struct{} // given to the one waiter that runs the flush
	done    chan struct{} // closed when it ran; err is then set
	err     error
}

// syncHandle is an open directory of the user area that a flush can be
// run through.
type syncHandle struct {
	dev    uint64 // its filesystem
	fd     int
	opened uint64 // order of opening, from opens
}

// with makes a waiter of h whose writes an fsync of own makes durable
// when it is alone in a flush: the copied file, or the directory h is
// for a rename. own -1 (a tree: many files) always takes a syncfs.
func (h syncHandle) with(own int) waiter { return waiter{syncHandle: h, own: own} }

// waiter is a syncHandle and the waiter's own descriptor.
type waiter struct {
	syncHandle
	own int
}

// opens orders the descriptors handed to the flusher by when they were
// opened.
var opens atomic.Uint64

// newSyncHandle describes fd, just opened, for the flusher.
func newSyncHandle(fd int) (syncHandle, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return syncHandle{}, fmt.Errorf("fstat: %w", err)
	}
	return syncHandle{dev: st.Dev, fd: fd, opened: opens.Add(1)}, nil
}

// sync returns once everything written to w's filesystem before the call
// is on disk, or the error of the flush that was to put it there. w's
// descriptors must stay open until sync returns.
func (f *flusher) sync(w waiter) error {
	_, err := f.join(w)
	return err
}

// join is sync, and also reports whether the flush was an fsync of w's
// own descriptor (w was alone in it): then it has reported that file's own
// writeback errors too.
func (f *flusher) join(w waiter) (fsynced bool, err error) {
	h := w.syncHandle
	f.mu.Lock()
	b := f.next
	if b == nil {
		b = &flush{fds: map[uint64]syncHandle{}, lead: make(chan struct{}, 1), done: make(chan struct{})}
		f.next = b
	}
	b.waiters++
	b.alone = w.own
	if old, ok := b.fds[h.dev]; !ok || h.opened < old.opened {
		b.fds[h.dev] = h
	}
	if !f.busy {
		f.busy = true
		b.lead <- struct{}{}
	}
	f.mu.Unlock()

	select {
	case <-b.done:
		return false, b.err
	case <-b.lead:
	}
	// This waiter runs b: from now on newcomers wait for the next flush.
	f.mu.Lock()
	f.next = nil
	f.mu.Unlock()
	fsynced, b.err = f.run(b)
	f.mu.Lock()
	close(b.done)
	if f.next != nil {
		// Whoever joined meanwhile runs the next flush.
		f.next.lead <- struct{}{}
	} else {
		f.busy = false
	}
	f.mu.Unlock()
	return fsynced, b.err
}

// run runs flush b and reports whether it was an fsync of its one waiter's
// own descriptor.
func (f *flusher) run(b *flush) (fsynced bool, err error) {
	if b.waiters == 1 && b.alone >= 0 {
		fsync := f.fsync
		if fsync == nil {
			fsync = unix.Fsync
		}
		if err := fsync(b.alone); err != nil {
			return true, fmt.Errorf("fsync: %w", err)
		}
		return true, nil
	}
	syncfs := f.syncfs
	if syncfs == nil {
		syncfs = unix.Syncfs
	}
	for _, h := range b.fds {
		if err := syncfs(h.fd); err != nil {
			return false, fmt.Errorf("syncfs: %w", err)
		}
	}
	return false, nil
}
