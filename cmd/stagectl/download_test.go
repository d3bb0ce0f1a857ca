package main

import (
	"bytes"
	"fmt"
	"hash/adler32"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// cuttingProxy passes requests to the server, recording their Range
// headers; the first download it passes is cut after cutAt bytes.
type cuttingProxy struct {
	*httptest.Server
	cutAt int64

	mu     sync.Mutex
	gets   int
	ranges []string // of each GET of a download
}

func newCuttingProxy(t *testing.T, cutAt int64) *cuttingProxy {
	p := &cuttingProxy{cutAt: cutAt}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, server.url+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		cut := false
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/downloads/") {
			p.mu.Lock()
			p.gets++
			cut = p.gets == 1 && p.cutAt > 0
			p.ranges = append(p.ranges, r.Header.Get("Range"))
			p.mu.Unlock()
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		if !cut {
			io.Copy(w, resp.Body)
			return
		}
		io.CopyN(w, resp.Body, p.cutAt)
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // the connection breaks mid-body
	}))
	t.Cleanup(p.Close)
	return p
}

// TestDownloadResumes: a download cut mid-body resumes with Range in the
// same run; a .part left by an interrupted run is resumed by the next one;
// both end byte for byte equal to the source and checked with adler32.
func TestDownloadResumes(t *testing.T) {
	liam := newUser("liam")
	data := patterned(3<<20 + 12345)
	sum := fmt.Sprintf("%08x", adler32.Checksum(data))
	src := sourceFile(t, "vis.bin", data)
	id := strings.TrimSpace(mustRun(t, exitOK, "stage", "direct_download", src, "dl/vis.bin", "--user", liam, "--wait", "--json").stdout)
	var st staging
	pureJSON(t, id, &st)
	if st.DownloadURL == "" {
		t.Fatalf("direct_download gave no link: %+v", st)
	}

	t.Run("cut mid-body", func(t *testing.T) {
		p := newCuttingProxy(t, 1<<20)
		dir := t.TempDir()
		r := stagectl(t, map[string]string{"STAGING_URL": p.URL}, "download", st.ID, "-o", dir+"/", "--adler32", sum)
		if r.code != exitOK || !strings.Contains(r.stdout, "adler32 "+sum+" checked") {
			t.Fatalf("download: %s", r)
		}
		sameFile(t, filepath.Join(dir, "vis.bin"), data)
		if want := []string{"", "bytes=1048576-"}; fmt.Sprint(p.ranges) != fmt.Sprint(want) {
			t.Errorf("Range headers %q, want %q", p.ranges, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "vis.bin.part")); !os.IsNotExist(err) {
			t.Errorf("the .part file is left behind (%v)", err)
		}
	})

	t.Run("part file of an interrupted run", func(t *testing.T) {
		p := newCuttingProxy(t, 0)
		dst := filepath.Join(t.TempDir(), "mine.bin")
		os.WriteFile(dst+".part", data[:777777], 0o644)
		r := stagectl(t, map[string]string{"STAGING_URL": p.URL}, "download", st.DownloadURL, "-o", dst, "--adler32", sum, "--json")
		if r.code != exitOK {
			t.Fatalf("download: %s", r)
		}
		var res downloaded
		pureJSON(t, r.stdout, &res)
		if res.ResumedFrom != 777777 || res.Bytes != int64(len(data)) || !res.Adler32Check || res.Path != dst {
			t.Errorf("download --json = %+v, want resumed from 777777, %d bytes, checked, at %s", res, len(data), dst)
		}
		sameFile(t, dst, data)
		if want := []string{"bytes=777777-"}; fmt.Sprint(p.ranges) != fmt.Sprint(want) {
			t.Errorf("Range headers %q, want %q", p.ranges, want)
		}
	})

	t.Run("checksum mismatch", func(t *testing.T) {
		dst := filepath.Join(t.TempDir(), "bad.bin")
		r := stagectl(t, nil, "download", st.ID, "-o", dst, "--adler32", "00000001")
		if r.code != exitFailed || !strings.Contains(r.stderr, "checksum_mismatch") {
			t.Errorf("download with a wrong adler32: %s\nwant exit 1, checksum_mismatch", r)
		}
		for _, p := range []string{dst, dst + ".part"} {
			if _, err := os.Stat(p); !os.IsNotExist(err) {
				t.Errorf("%s kept after a mismatch (%v)", p, err)
			}
		}
	})

	t.Run("to stdout", func(t *testing.T) {
		r := stagectl(t, nil, "download", st.ID, "-o", "-", "--adler32", sum)
		if r.code != exitOK || !bytes.Equal([]byte(r.stdout), data) {
			t.Errorf("download -o - gave exit %d and %d bytes, want 0 and the file", r.code, len(r.stdout))
		}
		if r := stagectl(t, nil, "download", st.ID, "-o", "-", "--adler32", "00000001"); r.code != exitFailed || !strings.Contains(r.stderr, "checksum_mismatch") {
			t.Errorf("download -o - with a wrong adler32: exit %d, %s; want 1, checksum_mismatch", r.code, r.stderr)
		}
		if r := stagectl(t, nil, "download", st.ID, "-o", "-", "--json"); r.code != exitUsage || r.stdout != "" {
			t.Errorf("download -o - --json: %s\nwant exit 2 and nothing on stdout", r)
		}
	})

	t.Run("no link", func(t *testing.T) {
		cp := strings.TrimSpace(mustRun(t, exitOK, "stage", "local_copy", src, "dl/copy.bin", "--user", liam, "--wait", "--json").stdout)
		var copied staging
		pureJSON(t, cp, &copied)
		r := stagectl(t, nil, "download", copied.ID)
		if r.code != exitFailed || !strings.Contains(r.stderr, "not direct_download") {
			t.Errorf("download of a local_copy: %s\nwant exit 1 saying it has no link", r)
		}
		r = stagectl(t, nil, "download", "/api/v1/downloads/not-a-token")
		if r.code != exitFailed || !strings.Contains(r.stderr, "not_found") {
			t.Errorf("download of an unknown link: %s\nwant exit 1, not_found", r)
		}
	})
}

func sameFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s differs from the source at byte %d (%d bytes, want %d)", path, i, len(got), len(want))
	}
}
