package stage_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

// TestConcurrentCopiesShareFlushes: concurrent small copies all end on
// disk and share their flushes, no copy is renamed into place before a
// flush ran while its complete data sat under its temporary name, and none
// is reported done before a flush ran once it had its name.
func TestConcurrentCopiesShareFlushes(t *testing.T) {
	f := newFixture(t, "")
	const n = 48
	content := strings.Repeat("x", 4096)
	for i := range n {
		write(t, f.storage, fmt.Sprintf("many/%d.dat", i), content)
	}
	dir := filepath.Join(f.userArea, "alice", "out")
	var mu sync.Mutex
	flushes := 0
	syncedData := map[string]bool{}  // temporary names seen complete by a flush
	syncedNames := map[string]bool{} // final names seen by a flush
	record := func(fd int) {
		entries, _ := os.ReadDir(dir)
		mu.Lock()
		flushes++
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil || fi.Size() != int64(len(content)) {
				continue
			}
			if strings.HasPrefix(e.Name(), ".staging-") {
				syncedData[e.Name()] = true
			} else {
				syncedNames[e.Name()] = true
			}
		}
		mu.Unlock()
	}
	stage.SetFlush(f.s,
		func(fd int) error { record(fd); return unix.Syncfs(fd) },
		func(fd int) error { record(fd); return unix.Fsync(fd) })
	// The first copy makes the directory; the rest run at once.
	if _, err := f.s.Copy(context.Background(), cmd("r-first", "obs/x.fits", "out/first"), nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			id, name := fmt.Sprintf("r%d", i), fmt.Sprintf("%d.dat", i)
			r, err := f.s.Copy(context.Background(), cmd(id, fmt.Sprintf("many/%d.dat", i), "out/"+name), nil)
			if err != nil || r.Outcome != contract.OutcomeStaged {
				t.Errorf("copy %d: %+v, %v", i, r, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if !syncedData[".staging-"+id+".tmp"] {
				t.Errorf("copy %d was renamed with no flush of its complete data before", i)
			}
			if !syncedNames[name] {
				t.Errorf("copy %d was reported done with no flush of its name before", i)
			}
		})
	}
	wg.Wait()
	for i := range n {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%d.dat", i)))
		if err != nil || string(b) != content {
			t.Errorf("copy %d on disk: %d bytes, %v", i, len(b), err)
		}
	}
	if flushes >= 2*n {
		t.Errorf("%d concurrent copies took %d flushes; they share none", n, flushes)
	}
	t.Logf("%d copies, %d flushes", n, flushes)
}

// TestFlushErrorFailsCopies: when the flush fails, every copy waiting on it
// fails and none is left under its name or its temporary name.
func TestFlushErrorFailsCopies(t *testing.T) {
	f := newFixture(t, "")
	must(t, os.MkdirAll(filepath.Join(f.userArea, "alice", "out"), 0o755))
	fail := func(int) error { return syscall.EIO }
	stage.SetFlush(f.s, fail, fail)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := f.s.Copy(context.Background(), cmd(fmt.Sprintf("r%d", i), "obs/x.fits", fmt.Sprintf("out/%d", i)), nil)
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("copy %d: %v, want EIO", i, err)
			}
		})
	}
	wg.Wait()
	if got := listing(t, filepath.Join(f.userArea, "alice", "out")); len(got) != 1 {
		t.Errorf("after failed flushes the target directory holds %v, want nothing", got)
	}
}

// TestLoneCopyFsyncs: a copy alone in its flushes fsyncs its file and its
// directory rather than syncing the whole filesystem.
func TestLoneCopyFsyncs(t *testing.T) {
	f := newFixture(t, "")
	var syncfs, fsync atomic.Int32
	stage.SetFlush(f.s,
		func(fd int) error { syncfs.Add(1); return unix.Syncfs(fd) },
		func(fd int) error { fsync.Add(1); return unix.Fsync(fd) })
	if _, err := f.s.Copy(context.Background(), cmd("r1", "obs/x.fits", "out/x"), nil); err != nil {
		t.Fatal(err)
	}
	if syncfs.Load() != 0 || fsync.Load() != 2 {
		t.Errorf("a lone copy made %d syncfs and %d fsync calls, want 0 and 2 (its file, its directory)", syncfs.Load(), fsync.Load())
	}
}
