package stager_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// A copy, or a tree copy, cancelled while it runs stops within about a
// second and leaves nothing in the user's area: no temporary entry, no
// partial result, no in-flight marker.
func TestCancelRunningCopy(t *testing.T) {
	if testing.Short() {
		t.Skip("copies sparse files of 1 GiB")
	}
	for _, tt := range []struct {
		name  string
		files []string // under the source
	}{
		{"file", []string{"big.ms"}},
		{"tree", []string{"obs/a.ms", "obs/b.ms", "obs/sub/c.ms"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startStager(t, nil)
			for _, rel := range tt.files {
				p := filepath.Join(s.storage, rel)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				// Sparse: made at once, yet copied byte by byte, which
				// takes seconds.
				f, err := os.Create(p)
				if err != nil {
					t.Fatal(err)
				}
				if err := errors.Join(f.Truncate(1<<30), f.Close()); err != nil {
					t.Fatal(err)
				}
			}
			src := strings.SplitN(tt.files[0], "/", 2)[0]
			id := uuid.NewString()
			cmd := contract.Command{SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy, Username: "alice", LocalPathOnStorage: src, RelativePath: "staged/" + src, RequestedAt: time.Now().UTC()}
			if err := bus.PublishCommand(t.Context(), s.js, cmd); err != nil {
				t.Fatal(err)
			}
			home := filepath.Join(s.userArea, "alice")
			testenv.Eventually(t, 20*time.Second, "the copy to write under the user's area", func() bool {
				return len(entries(t, home)) > 0
			})
			asked := time.Now()
			c := contract.CancelRequest{SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Time: time.Now().UTC(), RequestID: id, CancelledBy: "alice"}
			if err := bus.PublishCancel(context.Background(), s.js, c); err != nil {
				t.Fatal(err)
			}
			evs := s.events(t, contract.EventSubject(id))
			if took := time.Since(asked); took > 3*time.Second {
				t.Errorf("the request ended %s after its cancel, want about a second", took)
			}
			if last := evs[len(evs)-1]; last.Type != contract.EventCancelled || last.CancelledBy != "alice" {
				t.Fatalf("last event %s (%+v), want cancelled by alice", last.Type, last.Error)
			}
			if left := entries(t, home); len(left) != 0 {
				t.Errorf("left in the user's area: %v", left)
			}
			if left := entries(t, filepath.Join(s.userArea, ".staging-inflight")); len(left) != 0 {
				t.Errorf("in-flight markers left: %v", left)
			}
		})
	}
}

// entries lists every file and directory under dir (none when dir does
// not exist), except the directories leading to the target.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !d.IsDir() || (p != dir && strings.HasPrefix(d.Name(), ".staging")) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
