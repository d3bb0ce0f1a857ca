package stager_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager"
)

// A stager killed with SIGKILL in the middle of a copy leaves no partial
// result under the final name; once a stager runs again the request is
// delivered again, completes, and the leftover is gone.
func TestKilledDuringCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("copies 1 GiB")
	}
	const size = 1 << 30
	dir := t.TempDir()
	url := natstest.StartServer(t, filepath.Join(dir, "nats")).ClientURL()
	_, js := natstest.Connect(t, url)
	s := &system{js: js, storage: filepath.Join(dir, "storage_a"), userArea: filepath.Join(dir, "users")}
	for _, d := range []string{s.storage, s.userArea} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { makeRemovable(t, s.userArea) })
	// Sparse: made at once, yet copied byte by byte, which takes seconds.
	f, err := os.Create(filepath.Join(s.storage, "big.ms"))
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		t.Fatal(err)
	}
	bin := buildStager(t)
	env := []string{"STAGING_STAGER_ACK_WAIT=2s"}
	p := startProcess(t, bin, url, s.storage, s.userArea, env...)

	id := uuid.NewString()
	cmd := contract.Command{SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy, Username: "alice", LocalPathOnStorage: "big.ms", RelativePath: "big.ms"}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := bus.PublishCommand(ctx, js, cmd); err != nil {
		t.Fatal(err)
	}

	final := filepath.Join(s.userArea, "alice", "big.ms")
	temp := filepath.Join(s.userArea, "alice", ".staging-"+id+".tmp")
	marker := filepath.Join(s.userArea, ".staging-inflight", id)
	// The watcher looks at the final name, then at the temporary one: a
	// final file while the temporary entry still exists, or a final file
	// of the wrong size or mode, is a partial result someone could see.
	var mu sync.Mutex
	var seen []string
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			fi, ferr := os.Lstat(final)
			_, terr := os.Lstat(temp)
			mu.Lock()
			switch {
			case ferr == nil && terr == nil:
				seen = append(seen, "final name present while the temporary entry exists")
			case ferr == nil && (fi.Size() != size || fi.Mode().Perm() != 0o400):
				seen = append(seen, "final file of "+fi.Mode().String()+" and the wrong size")
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	testenv.Eventually(t, 20*time.Second, "the temporary entry of the copy", func() bool {
		_, err := os.Lstat(temp)
		return err == nil
	})
	p.kill(t)
	for _, name := range []string{temp, marker} {
		if _, err := os.Lstat(name); err != nil {
			t.Errorf("after the kill: %v, want %s left behind", err, filepath.Base(name))
		}
	}
	if _, err := os.Lstat(final); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("after the kill, the final name: %v, want it absent", err)
	}

	startProcess(t, bin, url, s.storage, s.userArea, env...)
	evs := s.events(t, contract.EventSubject(id))
	close(stop)
	<-watched
	last := evs[len(evs)-1]
	if last.Type != contract.EventSucceeded || last.Bytes != size || last.Attempt < 2 {
		t.Errorf("last event = %s (attempt %d, %d bytes), want succeeded on a later attempt with %d bytes", last.Type, last.Attempt, last.Bytes, size)
	}
	if diff := cmp.Diff(seen, []string(nil)); diff != "" {
		t.Errorf("seen in the user area (-got +want):\n%s", diff)
	}
	fi, err := os.Stat(final)
	if err != nil || fi.Size() != size {
		t.Fatalf("final file: %v, %v; want %d bytes", fi, err, size)
	}
	for _, name := range []string{temp, marker} {
		if _, err := os.Lstat(name); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after completion, %s: %v, want it removed", filepath.Base(name), err)
		}
	}
}

// On start the stager removes the temporary entries of copies that no
// delivery will come back for, once they are older than a delivery may
// take, and leaves younger ones (another stager may be writing them).
func TestLeftoversRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	old := time.Now().Add(-time.Hour)
	leftover := func(id, sub string, age time.Time) string {
		t.Helper()
		tmp := filepath.Join(users, "alice", sub, ".staging-"+id+".tmp")
		if err := os.MkdirAll(filepath.Join(tmp, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(tmp, "d", "f"), []byte("partial"), 0o400); err != nil {
			t.Fatal(err)
		}
		// As a crashed tree copy leaves it: read-only.
		for _, d := range []string{filepath.Join(tmp, "d"), tmp} {
			if err := os.Chmod(d, 0o500); err != nil {
				t.Fatal(err)
			}
		}
		marker := filepath.Join(users, ".staging-inflight", id)
		if err := os.MkdirAll(filepath.Dir(marker), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(marker, []byte("alice\n"+filepath.ToSlash(filepath.Join(sub, ".staging-"+id+".tmp"))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(marker, age, age); err != nil {
			t.Fatal(err)
		}
		return tmp
	}
	// startStager makes the user area; these go in first.
	if err := os.MkdirAll(users, 0o755); err != nil {
		t.Fatal(err)
	}
	stale := leftover("stale", "deep/er", old)
	fresh := leftover("fresh", ".", time.Now())
	kept := filepath.Join(users, "alice", "deep", "kept.txt")
	if err := os.WriteFile(kept, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}

	startStager(t, func(c *stager.Config) { c.UserAreaRoot = users })

	got := map[string]bool{}
	for _, p := range []string{stale, filepath.Join(users, ".staging-inflight", "stale"), fresh, filepath.Join(users, ".staging-inflight", "fresh"), kept} {
		_, err := os.Lstat(p)
		got[p] = err == nil
	}
	want := map[string]bool{stale: false, filepath.Join(users, ".staging-inflight", "stale"): false, fresh: true, filepath.Join(users, ".staging-inflight", "fresh"): true, kept: true}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("present after start (-got +want):\n%s", diff)
	}
}
