package downloads

import (
	"archive/tar"
	"bytes"
	"io"
	"path"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
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
	var got []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, hdr.Name)
	}
	want := []string{"ds/", "ds/x", "ds/a/", "ds/a/b/", "ds/a/b/c", "ds/a/d", "ds/a/b/e", "ds/f/", "ds/f/g"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("entries (-got +want):\n%s", diff)
	}
}
