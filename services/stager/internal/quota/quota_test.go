package quota_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skao/skao-staging/services/stager/internal/quota"
)

func TestLoad(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		want       map[string]int64 // quota of each user; "" is another user
		wantErr    string
	}{
		{"default only", "", map[string]int64{"alice": 100}, ""},
		{"overrides", "alice 5 # small\n\n# none for bob\nbob 0\n", map[string]int64{"alice": 5, "bob": 0, "carol": 100}, ""},
		{"not a number", "alice lots\n", nil, "quotas:1: the quota of alice is not a number of bytes"},
		{"negative", "alice -1\n", nil, "not a number of bytes"},
		{"three fields", "alice 1 2\n", nil, `want "username bytes"`},
		{"bad username", "Alice 1\n", nil, `want "username bytes"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := ""
			if tt.file != "" {
				file = filepath.Join(t.TempDir(), "quotas")
				if err := os.WriteFile(file, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			q, err := quota.Load(100, file)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load = %v, want an error saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for user, want := range tt.want {
				if got := q.Of(user); got != want {
					t.Errorf("quota of %s = %d, want %d", user, got, want)
				}
			}
		})
	}
	if _, err := quota.Load(-1, ""); err == nil {
		t.Error("a negative default is accepted")
	}
}

// Usage counts the bytes of the user's regular files, not those of hard
// links (their data is the source's) nor links.
func TestUsage(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "alice", "sub")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"a": 10, "sub/b": 20, "linked": 1000} {
		if err := os.WriteFile(filepath.Join(dir, "alice", name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "alice", "linked"), filepath.Join(dir, "source")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "alice", "link")); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if got, err := quota.Usage(root, "alice"); err != nil || got != 30 {
		t.Errorf("Usage = %d, %v; want 30", got, err)
	}
	if got, err := quota.Usage(root, "nobody"); err != nil || got != 0 {
		t.Errorf("Usage of a user without a directory = %d, %v; want 0", got, err)
	}
}
