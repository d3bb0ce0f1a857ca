package jupyterbridge_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/rucio/ruciotest"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
)

// TestJupyterCopyOfDID uploads a file DID, a dataset (a name with a '/')
// and a nested container into a user's server, each file checked against
// the fake Rucio's catalogue; a file whose checksum disagrees fails the
// request and leaves nothing at the target.
func TestJupyterCopyOfDID(t *testing.T) {
	path := ruciotest.Path
	resolved := func(bytes int64, paths ...string) *contract.Resolved {
		return &contract.Resolved{Files: int64(len(paths)), Bytes: bytes, Part: 1, Parts: 1, Paths: paths}
	}
	hub := hubtest.Get(t)
	src := t.TempDir()
	fake := ruciotest.New(t, "SITE_POSIX", src+"/")
	file := func(scope, name, content string) {
		p := filepath.Join(src, ruciotest.Path(scope, name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		fake.AddFile(scope, name, []byte(content))
	}
	file("testsrc", "file1", "one")
	file("testsrc", "dir/x", "deeper")
	file("user.jdoe", "a.root", "jdoe's")
	file("testsrc", "bad-sum", "twelve bytes")
	fake.SetCatalogue("testsrc", "bad-sum", 12, "00000001", "")
	fake.AddCollection("DATASET", "testsrc", "ds1", "testsrc:file1", "testsrc:dir/x")
	fake.AddCollection("DATASET", "user.jdoe", "ds2", "user.jdoe:a.root")
	fake.AddCollection("CONTAINER", "testsrc", "outer", "testsrc:ds1", "user.jdoe:ds2")
	fake.AddCollection("DATASET", "testsrc", "dsbad", "testsrc:file1", "testsrc:bad-sum")
	fake.AddFile("testsrc", "elsewhere", []byte("x"), "CERN_DISK")

	cfg := testConfig(hub.URL, hub.Token, src)
	cfg.Rucio = rucio.Config{URL: fake.URL, Account: ruciotest.Account, Username: ruciotest.Username, Password: ruciotest.Password,
		RSE: fake.RSE, PFNPrefix: fake.PFNPrefix(), Timeout: 5 * time.Second, Retries: 2}
	b := startBridge(t, cfg)
	user := hub.NewUser(t)

	for _, tt := range []struct {
		did, target string
		want        outcome
		detail      string
		onDisk      map[string]string
		resolved    *contract.Resolved // what the resolved event reports; nil: none
	}{
		{"testsrc:file1", "f1", outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 3, Files: 1}, "",
			map[string]string{"f1": "one"}, resolved(3, path("testsrc", "file1"))},
		{"testsrc:ds1", "ds1", outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 9, Files: 2}, "",
			map[string]string{"ds1/file1": "one", "ds1/dir/x": "deeper"}, resolved(9, path("testsrc", "file1"), path("testsrc", "dir/x"))},
		{"testsrc:outer", "outer", outcome{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Bytes: 15, Files: 3}, "",
			map[string]string{"outer/file1": "one", "outer/dir/x": "deeper", "outer/a.root": "jdoe's"},
			resolved(15, path("testsrc", "file1"), path("testsrc", "dir/x"), path("user.jdoe", "a.root"))},
		{"testsrc:bad-sum", "bad", outcome{Type: contract.EventFailed, Code: contract.CodeChecksumMismatch}, "bad-sum", nil,
			resolved(12, path("testsrc", "bad-sum"))},
		{"testsrc:dsbad", "dsbad", outcome{Type: contract.EventFailed, Code: contract.CodeChecksumMismatch}, "bad-sum", nil,
			resolved(15, path("testsrc", "file1"), path("testsrc", "bad-sum"))},
		{"testsrc:elsewhere", "far", outcome{Type: contract.EventFailed, Code: contract.CodeNotAtSite}, "CERN_DISK", nil, nil},
		{"testsrc:nosuch", "none", outcome{Type: contract.EventFailed, Code: contract.CodeDIDNotFound}, "nosuch", nil, nil},
	} {
		t.Run(tt.did, func(t *testing.T) {
			cmd := command(user, "", tt.target, "")
			cmd.DID = tt.did
			events := b.stage(t, cmd, hub.Token, ruciotest.Password)
			last := events[len(events)-1]
			if diff := cmp.Diff(outcomeOf(last), tt.want); diff != "" {
				t.Fatalf("outcome (-got +want):\n%s\nlast event: %+v", diff, last)
			}
			if last.DID != tt.did {
				t.Errorf("last event did %q, want %q", last.DID, tt.did)
			}
			// One resolved event, right after started, before anything is
			// uploaded.
			var got *contract.Resolved
			for i, ev := range events {
				if ev.Type != contract.EventResolved {
					continue
				}
				if got != nil || i == 0 || events[i-1].Type != contract.EventStarted || ev.DID != tt.did {
					t.Errorf("resolved event %d of %s (did %q) is not the one right after started", i, tt.did, ev.DID)
				}
				got = ev.Resolved
			}
			if diff := cmp.Diff(got, tt.resolved); diff != "" {
				t.Errorf("resolved (-got +want):\n%s", diff)
			}
			if tt.detail != "" && !strings.Contains(last.Error.Detail, tt.detail) {
				t.Errorf("detail %q does not name %q", last.Error.Detail, tt.detail)
			}
			if tt.onDisk == nil {
				entries, _ := os.ReadDir(filepath.Dir(hub.UserPath(user, tt.target)))
				for _, e := range entries {
					if strings.HasPrefix(e.Name(), tt.target) || strings.Contains(e.Name(), tt.target+".") {
						t.Errorf("%s left in the user's server after a failure", e.Name())
					}
				}
			}
			for p, want := range tt.onDisk {
				data, err := os.ReadFile(hub.UserPath(user, p))
				if err != nil || string(data) != want {
					t.Errorf("%s holds %q (%v), want %q", p, data, err, want)
				}
			}
		})
	}
	if logs := b.logs.String(); strings.Contains(logs, ruciotest.Password) {
		t.Error("the logs reveal the Rucio password")
	}
}
