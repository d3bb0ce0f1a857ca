package stage_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/stager/internal/ownership"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

type fixture struct {
	s        *stage.Stager
	storage  string
	userArea string
	outside  string
}

// newFixture lays out a storage with a file, a tree, a symbolic link
// inside and one leading out, and an empty user area. storageParent, when
// set, is where the storage goes (another filesystem).
func newFixture(t *testing.T, storageParent string) *fixture {
	t.Helper()
	dir := t.TempDir()
	if storageParent == "" {
		storageParent = dir
	}
	f := &fixture{storage: filepath.Join(storageParent, "storage_a"), userArea: filepath.Join(dir, "users"), outside: filepath.Join(dir, "outside")}
	for _, d := range []string{f.storage, f.userArea, f.outside} {
		must(t, os.MkdirAll(d, 0o755))
	}
	write(t, f.storage, "obs/x.fits", "hello, sky")
	write(t, f.storage, "tree/a.txt", "a")
	write(t, f.storage, "tree/sub/b.txt", "bb")
	write(t, f.storage, "tree/sub/deeper/c.txt", "ccc")
	must(t, os.Mkdir(filepath.Join(f.storage, "tree/empty"), 0o755))
	must(t, os.Symlink("../obs/x.fits", filepath.Join(f.storage, "tree/linked.fits")))
	write(t, f.outside, "secret", "secret")
	must(t, os.Symlink(filepath.Join(f.outside, "secret"), filepath.Join(f.storage, "obs/escape")))
	write(t, f.storage, "bad/ok.txt", "ok")
	must(t, os.Symlink("../../outside/secret", filepath.Join(f.storage, "bad/escape")))

	src, err := storage.Open(f.storage)
	must(t, err)
	users, err := os.OpenRoot(f.userArea)
	must(t, err)
	t.Cleanup(func() {
		src.Close()
		users.Close()
		makeRemovable(t, f.userArea)
	})
	f.s = &stage.Stager{Source: src, Users: users, Workers: 3, Tracer: noop.NewTracerProvider().Tracer("test"), ProgressEvery: time.Millisecond}
	return f
}

// writers are the methods that write into the user area, by name.
var writers = map[string]func(*stage.Stager, contract.Command) error{
	"copy": func(s *stage.Stager, c contract.Command) error {
		_, err := s.Copy(context.Background(), c, nil)
		return err
	},
	"symlink": func(s *stage.Stager, c contract.Command) error {
		_, err := s.Symlink(context.Background(), c)
		return err
	},
	"hardlink": func(s *stage.Stager, c contract.Command) error {
		_, err := s.Hardlink(context.Background(), c)
		return err
	},
}

func makeRemovable(t testing.TB, dir string) {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	})
	if err != nil {
		t.Logf("restore permissions: %v", err)
	}
}

func write(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, rel)
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), 0o644))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func cmd(id, src, rel string) contract.Command {
	return contract.Command{SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy, Username: "alice", LocalPathOnStorage: src, RelativePath: rel}
}

// listing describes every entry below dir: mode and, for files, content.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		line := fmt.Sprintf("%s %v", rel, fi.Mode())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		out = append(out, line)
		return nil
	})
	must(t, err)
	sort.Strings(out)
	return out
}

func TestCheck(t *testing.T) {
	f := newFixture(t, "")
	rel, fi, err := f.s.Check(context.Background(), cmd("req", filepath.Join(f.storage, "tree"), "x"))
	must(t, err)
	if rel != "tree" || !fi.IsDir() {
		t.Errorf("Check = %q, dir %v; want tree, a directory", rel, fi.IsDir())
	}
	if _, _, err := f.s.Check(context.Background(), cmd("req", "obs/escape", "x")); contract.CodeOf(err) != contract.CodeOutsideStorage {
		t.Errorf("Check(obs/escape) error = %v, want outside_storage", err)
	}
}

// TestOwnership gives staged data to the user named in a map file; chown
// needs root.
func TestOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: giving files to another user needs root (CAP_CHOWN)")
	}
	f := newFixture(t, "")
	mapFile := filepath.Join(t.TempDir(), "owners")
	must(t, os.WriteFile(mapFile, []byte("# site users\nalice 1234:5678\n"), 0o644))
	owners, err := ownership.New(ownership.ModeMap, mapFile)
	must(t, err)
	f.s.Owners = owners

	_, err = f.s.Copy(context.Background(), cmd("req1", "tree", "deep/t"), nil)
	must(t, err)
	_, err = f.s.Symlink(context.Background(), cmd("req2", "obs/x.fits", "l"))
	must(t, err)
	_, err = f.s.Hardlink(context.Background(), cmd("req3", "obs/x.fits", "h"))
	must(t, err)

	owner := func(rel string) string {
		var st syscall.Stat_t
		must(t, syscall.Lstat(filepath.Join(f.userArea, rel), &st))
		return fmt.Sprintf("%d:%d", st.Uid, st.Gid)
	}
	got := map[string]string{}
	for _, rel := range []string{"alice", "alice/deep", "alice/deep/t", "alice/deep/t/sub/deeper/c.txt", "alice/l", "alice/h"} {
		got[rel] = owner(rel)
	}
	want := map[string]string{
		"alice": "1234:5678", "alice/deep": "1234:5678", "alice/deep/t": "1234:5678",
		"alice/deep/t/sub/deeper/c.txt": "1234:5678", "alice/l": "1234:5678",
		// The hard link is the source's inode: never given away.
		"alice/h": "0:0",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("owners (-got +want):\n%s", diff)
	}
	if fi, err := os.Stat(filepath.Join(f.storage, "obs/x.fits")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("source mode after staging = %v, %v; want 0644", fi.Mode(), err)
	}

	_, err = f.s.Copy(context.Background(), contract.Command{ID: "req4", Username: "bob", LocalPathOnStorage: "obs/x.fits", RelativePath: "x"}, nil)
	if code := contract.CodeOf(err); code != contract.CodeInvalidUsername {
		t.Errorf("Copy for a user outside the map: error %v, want invalid_username", err)
	}
	if _, err := os.Stat(filepath.Join(f.userArea, "bob")); err == nil {
		t.Error("a directory was made for a user outside the map")
	}
}

// An expected_adler32 the method cannot check is refused before anything
// is made, never ignored: a tree has no one checksum, and links and
// download links copy nothing.
func TestChecksumNotCheckable(t *testing.T) {
	tests := []struct {
		name string
		src  string
		run  func(context.Context, *stage.Stager, contract.Command) error
	}{
		{"copy of a tree", "tree", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, err := s.Copy(ctx, c, nil)
			return err
		}},
		{"symlink", "obs/x.fits", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, err := s.Symlink(ctx, c)
			return err
		}},
		{"hardlink", "obs/x.fits", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, err := s.Hardlink(ctx, c)
			return err
		}},
		{"download check", "obs/x.fits", func(ctx context.Context, s *stage.Stager, c contract.Command) error {
			_, _, err := s.Check(ctx, c)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, "")
			c := cmd("req", tt.src, "x")
			c.ExpectedAdler32 = "00000001"
			err := tt.run(t.Context(), f.s, c)
			if got := contract.CodeOf(err); got != contract.CodeMalformed {
				t.Errorf("error = %v, want code %s", err, contract.CodeMalformed)
			}
			if got := listing(t, f.userArea); len(got) != 1 {
				t.Errorf("the user area holds %v, want nothing", got[1:])
			}
		})
	}
}
