package stage

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/testenv"
)

// TestFlusherCoversEveryWaiter: many concurrent waiters share few flushes,
// and each returns only after a flush that started after it joined, so the
// flush covered what it wrote before joining.
func TestFlusherCoversEveryWaiter(t *testing.T) {
	var f flusher
	var mu sync.Mutex
	var clock int            // advanced by joins and flush starts
	started := map[int]int{} // flush number -> clock at its start
	var flushes atomic.Int32
	release := make(chan struct{})
	f.syncfs = func(fd int) error {
		n := int(flushes.Add(1))
		mu.Lock()
		clock++
		started[n] = clock
		mu.Unlock()
		if n == 1 {
			<-release // hold the first flush so the others pile up
		}
		return nil
	}
	const waiters = 64
	joined := make([]int, waiters)
	lastBefore := make([]int, waiters) // flushes started when the waiter returned
	var wg sync.WaitGroup
	for i := range waiters {
		wg.Go(func() {
			mu.Lock()
			clock++
			joined[i] = clock
			mu.Unlock()
			if err := f.sync(syncHandle{dev: 1, fd: 100 + i, opened: uint64(i)}.with(-1)); err != nil {
				t.Errorf("waiter %d: %v", i, err)
			}
			lastBefore[i] = int(flushes.Load())
		})
		if i == 0 {
			testenv.Eventually(t, 10*time.Second, "the first flush", func() bool { return flushes.Load() > 0 })
		}
	}
	waitForWaiters(t, &f, waiters-1)
	close(release)
	wg.Wait()

	n := int(flushes.Load())
	// The first flush, then one for all the waiters that piled up behind it.
	if n != 2 {
		t.Errorf("%d waiters took %d flushes, want 2", waiters, n)
	}
	for i := range waiters {
		covered := false
		for k := 1; k <= lastBefore[i]; k++ {
			if started[k] > joined[i] {
				covered = true
			}
		}
		if !covered {
			t.Errorf("waiter %d (joined at %d) returned with no flush started after it joined (%v)", i, joined[i], started)
		}
	}
}

// TestFlusherErrorFailsEveryWaiter: a flush that fails fails all of its
// waiters, and the next flush is tried afresh.
func TestFlusherErrorFailsEveryWaiter(t *testing.T) {
	var f flusher
	var calls atomic.Int32
	inFirst := make(chan struct{})
	release := make(chan struct{})
	f.syncfs = func(fd int) error {
		switch calls.Add(1) {
		case 1:
			close(inFirst)
			<-release
			return nil
		case 2:
			return syscall.EIO
		}
		return nil
	}
	// The first waiter's flush runs alone; the next ones join the second,
	// which fails.
	first := make(chan error, 1)
	go func() { first <- f.sync(syncHandle{dev: 1, fd: 3}.with(-1)) }()
	<-inFirst
	const waiters = 8
	errs := make(chan error, waiters)
	var joined sync.WaitGroup
	for i := range waiters {
		joined.Add(1)
		go func() {
			joined.Done()
			errs <- f.sync(syncHandle{dev: 1, fd: 10 + i}.with(-1))
		}()
	}
	joined.Wait()
	waitForWaiters(t, &f, waiters)
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first flush: %v", err)
	}
	failed := 0
	for range waiters {
		if err := <-errs; errors.Is(err, syscall.EIO) {
			failed++
		} else if err != nil {
			t.Errorf("unexpected error %v", err)
		}
	}
	if failed != waiters {
		t.Errorf("%d of %d waiters of the failed flush got its error", failed, waiters)
	}
	if err := f.sync(syncHandle{dev: 1, fd: 3}.with(-1)); err != nil {
		t.Errorf("the flush after a failed one: %v", err)
	}
}

// TestFlusherOneSyncfsPerFilesystem: waiters on two filesystems are
// flushed through one descriptor each, the one opened first.
func TestFlusherOneSyncfsPerFilesystem(t *testing.T) {
	var f flusher
	var mu sync.Mutex
	var fds []int
	inFirst := make(chan struct{})
	release := make(chan struct{})
	f.syncfs = func(fd int) error {
		mu.Lock()
		fds = append(fds, fd)
		n := len(fds)
		mu.Unlock()
		if n == 1 {
			close(inFirst)
			<-release
		}
		return nil
	}
	done := make(chan error, 5)
	go func() { done <- f.sync(syncHandle{dev: 9, fd: 1, opened: 1}.with(-1)) }()
	<-inFirst
	for _, h := range []syncHandle{{dev: 1, fd: 11, opened: 5}, {dev: 1, fd: 12, opened: 3}, {dev: 2, fd: 21, opened: 4}, {dev: 1, fd: 13, opened: 6}} {
		go func() { done <- f.sync(h.with(-1)) }()
	}
	waitForWaiters(t, &f, 4)
	close(release)
	for range 5 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fds) != 3 || fds[0] != 1 || !((fds[1] == 12 && fds[2] == 21) || (fds[1] == 21 && fds[2] == 12)) {
		t.Errorf("syncfs on %v, want 1 then 12 and 21 (the oldest descriptor of each filesystem)", fds)
	}
}

// waitForWaiters waits until n waiters wait for f's next flush.
func waitForWaiters(t *testing.T, f *flusher, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("%d waiters in the next flush", n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.next != nil && f.next.waiters == n
	})
}

// TestFlusherReportsOwnFsync: join reports an fsync of the waiter's own
// descriptor only when the flush was that, never for a shared flush or a
// waiter with no descriptor of its own.
func TestFlusherReportsOwnFsync(t *testing.T) {
	var f flusher
	inFirst := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	f.fsync = func(int) error {
		if calls.Add(1) == 1 {
			close(inFirst)
			<-release
		}
		return nil
	}
	f.syncfs = func(int) error { return nil }
	type joined struct {
		fsynced bool
		err     error
	}
	join := func(w waiter, to chan<- joined) {
		fsynced, err := f.join(w)
		to <- joined{fsynced, err}
	}
	// Alone with its own descriptor: an fsync of it.
	first := make(chan joined, 1)
	go join(syncHandle{dev: 1, fd: 3}.with(7), first)
	<-inFirst
	// Two joining meanwhile share the next flush: a syncfs.
	shared := make(chan joined, 2)
	go join(syncHandle{dev: 1, fd: 4}.with(8), shared)
	go join(syncHandle{dev: 1, fd: 5}.with(9), shared)
	waitForWaiters(t, &f, 2)
	close(release)
	if got := <-first; got.err != nil || !got.fsynced {
		t.Errorf("lone waiter: fsynced %v, err %v; want true, nil", got.fsynced, got.err)
	}
	for range 2 {
		if got := <-shared; got.err != nil || got.fsynced {
			t.Errorf("waiter of a shared flush: fsynced %v, err %v; want false, nil", got.fsynced, got.err)
		}
	}
	// Alone without a descriptor of its own (a tree): a syncfs.
	if fsynced, err := f.join(syncHandle{dev: 1, fd: 3}.with(-1)); err != nil || fsynced {
		t.Errorf("lone tree waiter: fsynced %v, err %v; want false, nil", fsynced, err)
	}
}
