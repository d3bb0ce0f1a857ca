package jupytercopy_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/jupytercopy"
)

func TestMain(m *testing.M) { os.Exit(hubtest.Main(m)) }

// sourceTree makes a storage holding files (path -> content) and returns
// a copier over it.
func sourceTree(t *testing.T, files map[string]string) (*jupytercopy.Copier, string) {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &jupytercopy.Copier{Source: root, SpawnTimeout: time.Minute, RetryDelay: 10 * time.Millisecond}, dir
}

// readTree returns every regular file below dir with its content, hidden
// entries left out.
func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != dir {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			got[filepath.ToSlash(rel)] = string(data)
		}
		if d.IsDir() && p != dir {
			rel, _ := filepath.Rel(dir, p)
			got[filepath.ToSlash(rel)+"/"] = ""
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestCopy(t *testing.T) {
	hub := hubtest.Get(t)
	files := map[string]string{
		"obs/vis.ms":                "visibilities",
		"obs/tree/a.txt":            "a",
		"obs/tree/sub/b.bin":        "\x00\x01\x02\xff",
		"obs/tree/sub/deeper/c.txt": strings.Repeat("c", 3000),
		"obs/tree/empty.dat":        "",
	}
	copier, srcDir := sourceTree(t, files)
	if err := os.Mkdir(filepath.Join(srcDir, "obs/tree/emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		source string
		target string
		want   map[string]string // the user's tree afterwards
		res    jupytercopy.Result
	}{
		{
			name:   "file into new directories",
			source: filepath.Join(srcDir, "obs/vis.ms"),
			target: "data/run1/vis.ms",
			want:   map[string]string{"data/": "", "data/run1/": "", "data/run1/vis.ms": "visibilities"},
			res:    jupytercopy.Result{Outcome: contract.OutcomeStaged, Bytes: 12, Files: 1, ServerStarted: true},
		},
		{
			name:   "tree by relative source",
			source: "obs/tree",
			target: "tree",
			want: map[string]string{
				"tree/": "", "tree/a.txt": "a", "tree/empty.dat": "", "tree/emptydir/": "",
				"tree/sub/": "", "tree/sub/b.bin": "\x00\x01\x02\xff", "tree/sub/deeper/": "", "tree/sub/deeper/c.txt": strings.Repeat("c", 3000),
			},
			res: jupytercopy.Result{Outcome: contract.OutcomeStaged, Bytes: 3005, Files: 4, ServerStarted: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			c := hub.Client(t, 1024) // several chunks for c.txt
			user := hub.NewUser(t)
			var updates []jupytercopy.Update
			got, err := copier.Copy(ctx, c, jupytercopy.Request{Username: user, Source: tt.source, Target: tt.target},
				func(u jupytercopy.Update) { updates = append(updates, u) })
			if err != nil {
				t.Fatalf("Copy: %v", err)
			}
			got.StartDuration = 0
			if diff := cmp.Diff(got, tt.res); diff != "" {
				t.Errorf("result (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(readTree(t, hub.UserPath(user, "")), tt.want); diff != "" {
				t.Errorf("user's files (-got +want):\n%s", diff)
			}
			if len(updates) == 0 {
				t.Fatal("no progress reported")
			}
			last := updates[len(updates)-1].Progress
			if last.BytesDone != tt.res.Bytes || last.FilesDone != tt.res.Files || last.FilesTotal != tt.res.Files {
				t.Errorf("last progress = %+v, want %d bytes and %d files done", last, tt.res.Bytes, tt.res.Files)
			}

			// Again: the target is there, so nothing is uploaded.
			again, err := copier.Copy(ctx, c, jupytercopy.Request{Username: user, Source: tt.source, Target: tt.target}, nil)
			if err != nil {
				t.Fatalf("second Copy: %v", err)
			}
			if diff := cmp.Diff(again, jupytercopy.Result{Outcome: contract.OutcomeAlreadyPresent}); diff != "" {
				t.Errorf("second result (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(readTree(t, hub.UserPath(user, "")), tt.want); diff != "" {
				t.Errorf("user's files after the second copy (-got +want):\n%s", diff)
			}
		})
	}
}

func TestCopyExistingTargetUntouched(t *testing.T) {
	hub := hubtest.Get(t)
	copier, _ := sourceTree(t, map[string]string{"new.txt": "new content"})
	c := hub.Client(t, 0)
	user := hub.NewUser(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := c.EnsureRunning(ctx, user, time.Minute, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Upload(ctx, user, "mine.txt", strings.NewReader("the user's own"), 14, nil); err != nil {
		t.Fatal(err)
	}
	got, err := copier.Copy(ctx, c, jupytercopy.Request{Username: user, Source: "new.txt", Target: "mine.txt"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != contract.OutcomeAlreadyPresent || got.Bytes != 0 {
		t.Errorf("result = %+v, want already_present with nothing uploaded", got)
	}
	if diff := cmp.Diff(readTree(t, hub.UserPath(user, "")), map[string]string{"mine.txt": "the user's own"}); diff != "" {
		t.Errorf("user's files (-got +want):\n%s", diff)
	}
}

func TestCopyErrors(t *testing.T) {
	hub := hubtest.Get(t)
	copier, srcDir := sourceTree(t, map[string]string{"f.txt": "x"})
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(srcDir, "escape")); err != nil {
		t.Fatal(err)
	}
	user := hub.NewUser(t)
	tests := []struct {
		name   string
		client *hubclient.Client
		req    jupytercopy.Request
		want   contract.Code
	}{
		{"unknown user", hub.Client(t, 0), jupytercopy.Request{Username: "nobody-at-all", Source: "f.txt", Target: "f.txt"}, hubclient.CodeUserNotFound},
		{"wrong token", hub.Client(t, 0).WithToken("wrong-token-here"), jupytercopy.Request{Username: user, Source: "f.txt", Target: "f.txt"}, hubclient.CodeForbidden},
		{"missing source", hub.Client(t, 0), jupytercopy.Request{Username: user, Source: "nope.txt", Target: "f.txt"}, contract.CodeSourceNotFound},
		{"source outside the storage", hub.Client(t, 0), jupytercopy.Request{Username: user, Source: "/etc/passwd", Target: "f.txt"}, contract.CodeOutsideStorage},
		{"source through a link outside", hub.Client(t, 0), jupytercopy.Request{Username: user, Source: "escape", Target: "f.txt"}, contract.CodeOutsideStorage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			_, err := copier.Copy(ctx, tt.client, tt.req, nil)
			if got := contract.CodeOf(err); got != tt.want {
				t.Errorf("code = %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}

// TestCopyRefusesNamesNoFilesystemTakes checks that a name longer than a
// filesystem takes, in the target or the source, is the request's fault:
// invalid_path before the hub is asked anything (the hub here is
// unreachable, which would otherwise be retried as jupyter_unavailable).
func TestCopyRefusesNamesNoFilesystemTakes(t *testing.T) {
	copier, _ := sourceTree(t, map[string]string{"f.txt": "x"})
	hub, err := hubclient.New(hubclient.Options{URL: "http://127.0.0.1:1", Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("n", 300)
	fits := strings.Repeat("n", 255-hubclient.TempNameExtra)
	tests := []struct {
		name     string
		src, dst string
		want     contract.Code
	}{
		{"target name", "f.txt", "d/" + long, contract.CodeInvalidPath},
		{"target name without room for the temporary name", "f.txt", fits + "x", contract.CodeInvalidPath},
		{"target directory name", "f.txt", long + "/f.txt", contract.CodeInvalidPath},
		{"source name", long, "f.txt", contract.CodeInvalidPath},
		{"longest target name (reaches the hub)", "f.txt", fits, hubclient.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			_, err := copier.Copy(ctx, hub, jupytercopy.Request{Username: "alice", Source: tt.src, Target: tt.dst}, nil)
			if got := contract.CodeOf(err); got != tt.want {
				t.Errorf("code = %q (%v), want %q", got, err, tt.want)
			}
		})
	}
}
