package gateway_test

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/services/gateway"
)

// storageEntry is an item of GET /api/v1/storage as a client reads it.
type storageEntry struct {
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	Size       int64     `json:"size"`
	ModifiedAt time.Time `json:"modified_at"`
	Link       string    `json:"link"`
}

type storageListing struct {
	Path       string         `json:"path"`
	Root       string         `json:"root"`
	Items      []storageEntry `json:"items"`
	NextCursor string         `json:"next_cursor"`
}

// sourceTree is a storage with a file, a directory, a link inside, a link
// out of the storage and a link to nowhere, beside a secret outside it.
func sourceTree(t *testing.T) (root, outside string) {
	t.Helper()
	root, outside = t.TempDir(), t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("obs1/a.fits", "12345")
	write("obs1/sub/b.fits", "x")
	write("readme.txt", "hello")
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("not yours"), 0o600); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"inside":    "readme.txt",
		"escape":    outside,
		"escape-up": "../" + filepath.Base(outside),
		"nowhere":   "missing.txt",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root, outside
}

func TestStorageBrowser(t *testing.T) {
	root, outside := sourceTree(t)
	e := newEnv(t, gateway.Config{SourceRoot: root})

	t.Run("the root, symlinks shown but not followed", func(t *testing.T) {
		resp := e.do(http.MethodGet, "/api/v1/storage", "")
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d: %s", resp.status, resp.body)
		}
		l := decode[storageListing](t, resp)
		var got []storageEntry
		for _, it := range l.Items {
			if it.ModifiedAt.IsZero() {
				t.Errorf("%s has no modification time", it.Name)
			}
			it.ModifiedAt = time.Time{}
			got = append(got, it)
		}
		want := []storageEntry{
			{Name: "escape", Type: "symlink", Link: "outside"},
			{Name: "escape-up", Type: "symlink", Link: "outside"},
			{Name: "inside", Type: "symlink", Size: 5, Link: "file"},
			{Name: "nowhere", Type: "symlink", Link: "broken"},
			{Name: "obs1", Type: "dir"},
			{Name: "readme.txt", Type: "file", Size: 5},
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("items (-got +want):\n%s", diff)
		}
		if l.Path != "." || l.NextCursor != "" {
			t.Errorf("path %q, next_cursor %q; want \".\" and none", l.Path, l.NextCursor)
		}
	})

	t.Run("a subdirectory, relative or absolute", func(t *testing.T) {
		for _, p := range []string{"obs1", "obs1/", root + "/obs1", "obs1/sub/.."} {
			resp := e.do(http.MethodGet, "/api/v1/storage?path="+url.QueryEscape(p), "")
			if resp.status != http.StatusOK {
				t.Fatalf("%s: status = %d: %s", p, resp.status, resp.body)
			}
			l := decode[storageListing](t, resp)
			if len(l.Items) != 2 || l.Items[0].Name != "a.fits" || l.Items[0].Size != 5 || l.Items[1].Type != "dir" || l.Path != "obs1" {
				t.Errorf("%s: got %+v", p, l)
			}
		}
	})

	t.Run("pages through the cursor", func(t *testing.T) {
		var names []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 6 {
				t.Fatal("the cursor does not end")
			}
			resp := e.do(http.MethodGet, "/api/v1/storage?limit=4&cursor="+url.QueryEscape(cursor), "")
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d: %s", resp.status, resp.body)
			}
			l := decode[storageListing](t, resp)
			for _, it := range l.Items {
				names = append(names, it.Name)
			}
			if l.NextCursor == "" {
				break
			}
			cursor = l.NextCursor
		}
		want := []string{"escape", "escape-up", "inside", "nowhere", "obs1", "readme.txt"}
		if diff := cmp.Diff(names, want); diff != "" {
			t.Errorf("names over the pages (-got +want):\n%s", diff)
		}
	})

	tests := []struct {
		name, query string
		wantStatus  int
		wantCode    string
	}{
		{"climbs out", "path=..", 400, "outside_storage"},
		{"climbs out, nested", "path=obs1/../../" + url.QueryEscape(filepath.Base(outside)), 400, "outside_storage"},
		{"absolute elsewhere", "path=" + url.QueryEscape(outside), 400, "outside_storage"},
		{"through a symlink out", "path=escape", 400, "outside_storage"},
		{"through a relative symlink out", "path=escape-up", 400, "outside_storage"},
		{"below a symlink out", "path=escape/", 400, "outside_storage"},
		{"a NUL byte", "path=obs1%00", 400, "invalid_path"},
		{"a file", "path=readme.txt", 400, "invalid_path"},
		{"missing", "path=nope", 400, "source_not_found"},
		{"a bad limit", "limit=0", 422, "malformed"},
		{"a huge limit", "limit=100000", 422, "malformed"},
		{"a bad cursor", "cursor=%25%25", 422, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/api/v1/storage?"+tt.query, "")
			if resp.status != tt.wantStatus || resp.json(t)["code"] != tt.wantCode {
				t.Errorf("got %d %s, want %d %s", resp.status, resp.body, tt.wantStatus, tt.wantCode)
			}
		})
	}

	t.Run("read-only", func(t *testing.T) {
		resp := e.do(http.MethodPost, "/api/v1/storage", `{}`)
		if resp.status != http.StatusMethodNotAllowed {
			t.Errorf("POST: status = %d, want 405: %s", resp.status, resp.body)
		}
	})
}

func TestStorageBrowserTurnedOff(t *testing.T) {
	root, _ := sourceTree(t)
	e := newEnv(t, gateway.Config{SourceRoot: root, StorageBrowserDisabled: true})
	resp := e.do(http.MethodGet, "/api/v1/storage", "")
	if resp.status != http.StatusNotFound || resp.json(t)["code"] != "not_found" {
		t.Errorf("got %d %s, want 404 not_found", resp.status, resp.body)
	}

	e = newEnv(t, gateway.Config{})
	resp = e.do(http.MethodGet, "/api/v1/storage", "")
	if resp.status != http.StatusServiceUnavailable || resp.json(t)["code"] != "unavailable" {
		t.Errorf("without a source root: got %d %s, want 503 unavailable", resp.status, resp.body)
	}
}

// TestStorageBrowserAuth: with authentication on, any authenticated user may
// browse (staging reads the same storage for everyone); a stranger may not.
func TestStorageBrowserAuth(t *testing.T) {
	root, _ := sourceTree(t)
	e := newEnv(t, gateway.Config{
		SourceRoot: root,
		AuthMode:   "tokens", AuthTokensFile: tokensFile(t, "alice-secret-token alice\n"),
	})
	if r := e.do(http.MethodGet, "/api/v1/storage", ""); r.status != http.StatusUnauthorized {
		t.Errorf("no token: status = %d, want 401", r.status)
	}
	if r := e.do(http.MethodGet, "/api/v1/storage", "", "Authorization", "Bearer alice-secret-token"); r.status != http.StatusOK {
		t.Errorf("a user: status = %d, want 200: %s", r.status, r.body)
	}
}
