package storage_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
)

// newStorage lays out a storage mount with a file, a directory, symbolic
// links inside and outside, and a secret next to the mount.
func newStorage(t *testing.T) (*storage.Root, string) {
	t.Helper()
	base := t.TempDir()
	dir := filepath.Join(base, "storage_a")
	must(t, os.MkdirAll(filepath.Join(dir, "obs", "run1"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "obs", "run1", "x.fits"), []byte("data"), 0o644))
	must(t, os.WriteFile(filepath.Join(base, "secret"), []byte("secret"), 0o600))
	must(t, os.Symlink("run1/x.fits", filepath.Join(dir, "obs", "inside")))
	must(t, os.Symlink("../../secret", filepath.Join(dir, "obs", "escape")))
	must(t, os.Symlink(filepath.Join(base, "secret"), filepath.Join(dir, "obs", "absolute")))
	must(t, os.Symlink("../..", filepath.Join(dir, "obs", "up")))
	must(t, os.Symlink("loop", filepath.Join(dir, "loop")))
	// A second name for the mount, as a deployment may mount it.
	must(t, os.Symlink(dir, filepath.Join(base, "alias")))
	r, err := storage.Open(filepath.Join(base, "alias"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { must(t, r.Close()) })
	return r, base
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestStat(t *testing.T) {
	r, base := newStorage(t)
	tests := []struct {
		name     string
		path     string
		wantRel  string
		wantCode contract.Code
	}{
		{"relative", "obs/run1/x.fits", "obs/run1/x.fits", ""},
		{"absolute through the configured name", filepath.Join(base, "alias", "obs/run1/x.fits"), "obs/run1/x.fits", ""},
		{"absolute through the real name", filepath.Join(base, "storage_a", "obs/run1/x.fits"), "obs/run1/x.fits", ""},
		{"directory", "obs/run1/", "obs/run1", ""},
		{"dot segments inside", "obs/./run1/../run1/x.fits", "obs/run1/x.fits", ""},
		{"symlink inside the mount", "obs/inside", "obs/inside", ""},
		{"missing", "obs/run1/nothing.fits", "", contract.CodeSourceNotFound},
		{"below a file", "obs/run1/x.fits/more", "", contract.CodeSourceNotFound},
		{"climbing out", "obs/../../secret", "", contract.CodeOutsideStorage},
		{"climbing out absolute", filepath.Join(base, "storage_a", "..", "secret"), "", contract.CodeOutsideStorage},
		{"absolute elsewhere", filepath.Join(base, "secret"), "", contract.CodeOutsideStorage},
		{"prefix that is not the mount", filepath.Join(base, "storage_ab", "x"), "", contract.CodeOutsideStorage},
		{"root itself", filepath.Join(base, "alias"), "", contract.CodeInvalidPath},
		{"dot", ".", "", contract.CodeInvalidPath},
		{"symlink escaping", "obs/escape", "", contract.CodeOutsideStorage},
		{"absolute symlink", "obs/absolute", "", contract.CodeOutsideStorage},
		{"directory symlink leading out", "obs/up/secret", "", contract.CodeOutsideStorage},
		{"symlink loop", "loop", "", contract.CodeOutsideStorage},
		{"empty", "", "", contract.CodeMissingField},
		{"backslash", `obs\run1`, "", contract.CodeInvalidPath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel, _, err := r.Stat(tt.path)
			if tt.wantCode != "" {
				if err == nil {
					t.Fatalf("Stat(%q) = %q, want error %s", tt.path, rel, tt.wantCode)
				}
				if got := contract.CodeOf(err); got != tt.wantCode {
					t.Fatalf("Stat(%q) error code = %s (%v), want %s", tt.path, got, err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("Stat(%q): %v", tt.path, err)
			}
			if rel != tt.wantRel {
				t.Errorf("Stat(%q) rel = %q, want %q", tt.path, rel, tt.wantRel)
			}
		})
	}
}

func TestOpenReadsInsideOnly(t *testing.T) {
	r, _ := newStorage(t)
	f, err := r.Open("obs/inside")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 16)
	n, err := f.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b[:n]); got != "data" {
		t.Errorf("read %q, want %q", got, "data")
	}
	if _, err := r.Open("obs/escape"); contract.CodeOf(err) != contract.CodeOutsideStorage {
		t.Errorf("Open(obs/escape) error = %v, want outside_storage", err)
	}
}

func TestOpenRefusesMissingDir(t *testing.T) {
	if _, err := storage.Open(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Open of a missing directory succeeded")
	}
	if _, err := storage.Open(""); err == nil {
		t.Fatal("Open of an empty name succeeded")
	}
}

// FuzzRel checks that whatever the input, an accepted path stays inside the
// mount: it is local (no "..", not absolute) and, joined to the mount, still
// lies below it.
func FuzzRel(f *testing.F) {
	for _, s := range []string{"a/b", "/mnt/storage_a/x", "/mnt/storage_a/../x", "../x", "a/../../b", "/", ".", "a//b/./c", "/mnt/storage_ab/x", "/mnt/storage_a"} {
		f.Add(s)
	}
	dir := f.TempDir()
	mount := filepath.Join(dir, "storage_a")
	if err := os.Mkdir(mount, 0o755); err != nil {
		f.Fatal(err)
	}
	r, err := storage.Open(mount)
	if err != nil {
		f.Fatal(err)
	}
	defer r.Close()
	f.Fuzz(func(t *testing.T, p string) {
		if strings.HasPrefix(p, "/mnt/storage_a") {
			p = mount + strings.TrimPrefix(p, "/mnt/storage_a")
		}
		rel, err := r.Rel(p)
		if err != nil {
			if _, ok := err.(*contract.Error); !ok {
				t.Fatalf("Rel(%q) error %T %v is not a *contract.Error", p, err, err)
			}
			return
		}
		if !filepath.IsLocal(rel) {
			t.Fatalf("Rel(%q) = %q, which is not local", p, rel)
		}
		joined := filepath.Join(mount, rel)
		if !strings.HasPrefix(joined, mount+string(filepath.Separator)) {
			t.Fatalf("Rel(%q) = %q, which joined to the mount is %q: outside", p, rel, joined)
		}
	})
}
