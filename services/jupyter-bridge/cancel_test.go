package jupyterbridge_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
)

// A Jupyter upload cancelled while it runs stops within about a second
// and leaves nothing in the user's server: no partial file under the
// target's name or a temporary one, for a file and for a tree.
func TestCancelRunningUpload(t *testing.T) {
	hub := hubtest.Get(t)
	src := t.TempDir()
	// In the tests' 4-byte pieces, thousands of requests: seconds of work.
	big := bytes.Repeat([]byte("sky!"), 20000)
	for _, p := range []string{"big.fits", "tree/a.fits", "tree/b.fits"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(src, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := startBridge(t, testConfig(hub.URL, hub.Token, src))
	user := hub.NewUser(t)
	for _, source := range []string{"big.fits", "tree"} {
		t.Run(source, func(t *testing.T) {
			cmd := command(user, source, "cancelled/"+source, "")
			var asked time.Time
			events := b.stageWith(t, cmd, func(ev contract.Event) {
				if ev.Type != contract.EventProgress || ev.Progress.BytesDone == 0 || !asked.IsZero() {
					return
				}
				asked = time.Now()
				c := contract.CancelRequest{SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Time: time.Now().UTC(), RequestID: cmd.ID, CancelledBy: user}
				if err := bus.PublishCancel(context.Background(), b.js, c); err != nil {
					t.Error(err)
				}
			})
			last := events[len(events)-1]
			if last.Type != contract.EventCancelled || last.CancelledBy != user {
				t.Fatalf("last event %s (%+v), want cancelled by %s", last.Type, last.Error, user)
			}
			if took := time.Since(asked); took > 3*time.Second {
				t.Errorf("the upload ended %s after its cancel, want about a second", took)
			}
			// Every file under the target's directory, the server's own
			// checkpoints included.
			root := hub.UserPath(user, "cancelled")
			err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if os.IsNotExist(err) {
					return nil
				}
				if err == nil && !d.IsDir() {
					t.Errorf("left in the user's server: %s", p)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}
