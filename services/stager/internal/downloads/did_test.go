package downloads

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"hash/adler32"
	"io"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/storage"
)

// An archive's top is the last part of the DID's name; a name whose last
// part would lead its entries out of where they are unpacked is refused.
func TestArchiveName(t *testing.T) {
	for did, want := range map[string]string{
		"testsrc:ds1":       "ds1",
		"testsrc:runs/2026": "2026",
		"testsrc:runs/":     "runs",
		"testsrc:..":        "",
		"testsrc:a/..":      "",
		"testsrc:.":         "",
		"testsrc:/":         "",
	} {
		got, err := ArchiveName(did)
		switch {
		case want == "" && contract.CodeOf(err) != contract.CodeInvalidPath:
			t.Errorf("ArchiveName(%q) = %q, %v; want invalid_path", did, got, err)
		case want != "" && (err != nil || got != want):
			t.Errorf("ArchiveName(%q) = %q, %v; want %q", did, got, err, want)
		}
	}
}

// Each directory of the names comes once, before the first file in it,
// its parents before it.
func TestTarDirs(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, name := range []string{"x", "a/b/c", "a/d", "a/b/e", "f/g"} {
		if err := tarDirs(tw, dirs, "ds", path.Dir(name), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "ds/" + name}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"ds/ ", "ds/x ", "ds/a/ ", "ds/a/b/ ", "ds/a/b/c ", "ds/a/d ", "ds/a/b/e ", "ds/f/ ", "ds/f/g "}
	if diff := cmp.Diff(readTar(t, &buf), want); diff != "" {
		t.Errorf("entries (-got +want):\n%s", diff)
	}
}

// catalogue lists its files, and knows whether a listing is under way.
type catalogue struct {
	files   []rucio.File
	listing bool
}

func (c *catalogue) Files(_ context.Context, _ string, fn func(rucio.File) error) error {
	c.listing = true
	defer func() { c.listing = false }()
	for _, f := range c.files {
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// watched notes a write made while its catalogue lists.
type watched struct {
	io.Writer
	c      *catalogue
	during bool
}

func (w *watched) Write(p []byte) (int, error) {
	w.during = w.during || w.c.listing
	return w.Writer.Write(p)
}

// A DID's list of files is read whole before the archive starts: the call
// to Rucio does not last as long as the download. The archive then holds
// each file, checked, under the DID's name.
func TestDIDArchiveListsFirst(t *testing.T) {
	dir := t.TempDir()
	cat := &catalogue{}
	for _, f := range [][2]string{{"x", "top"}, {"a/b/c", "deep"}} {
		name, content := f[0], f[1]
		p := "rse/" + name
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		cat.files = append(cat.files, rucio.File{Name: name, Path: p, Bytes: int64(len(content)),
			Adler32: fmt.Sprintf("%08x", adler32.Checksum([]byte(content)))})
	}
	root, err := storage.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	h := &Handler{source: root, rucio: cat}
	var buf bytes.Buffer
	w := &watched{Writer: &buf, c: cat}
	begunListing := true
	files, err := h.writeDIDTar(t.Context(), w, "testsrc:ds", "ds", func() { begunListing = cat.listing })
	if err != nil || files != 2 {
		t.Fatalf("writeDIDTar = %d, %v; want 2 files", files, err)
	}
	if begunListing || w.during {
		t.Errorf("while Rucio was still listing: the archive began %v, was written to %v; want neither", begunListing, w.during)
	}
	want := []string{"ds/ ", "ds/x top", "ds/a/ ", "ds/a/b/ ", "ds/a/b/c deep"}
	if diff := cmp.Diff(readTar(t, &buf), want); diff != "" {
		t.Errorf("archive (-got +want):\n%s", diff)
	}
}

// readTar returns the entries of the tar archive r, "name content" each.
func readTar(t *testing.T, r io.Reader) []string {
	t.Helper()
	var got []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr.Name+" "+string(b))
	}
}
