package stager_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/stager"
)

func TestDirectDownload(t *testing.T) {
	forEachDownloadPath(t, testDirectDownload)
}

// forEachDownloadPath runs test once with files served through sendfile
// (the default) and once through the buffered copy.
func forEachDownloadPath(t *testing.T, test func(t *testing.T, edit func(*stager.Config))) {
	for _, sendfile := range []bool{true, false} {
		name := map[bool]string{true: "sendfile", false: "buffered"}[sendfile]
		t.Run(name, func(t *testing.T) {
			test(t, func(c *stager.Config) { c.DownloadSendfile = sendfile })
		})
	}
}

func testDirectDownload(t *testing.T, edit func(*stager.Config)) {
	s := startStager(t, edit)
	content := bytes.Repeat([]byte("0123456789"), 1000)
	s.write(t, "obs/big.ms", string(content))
	id := s.submit(t, contract.MethodDirectDownload, "obs/big.ms", "big.ms")
	evs := s.events(t, contract.EventSubject(id))
	last := evs[len(evs)-1]
	if last.Type != contract.EventSucceeded || last.Outcome != contract.OutcomeLinkIssued || last.DownloadURL == "" {
		t.Fatalf("last event = %+v, want succeeded with a download link", last)
	}

	h := s.downloadHandler(t, prometheus.NewRegistry())
	srv := httptest.NewServer(h)
	defer srv.Close()
	fi, err := os.Stat(filepath.Join(s.storage, "obs/big.ms"))
	if err != nil {
		t.Fatal(err)
	}
	modTime := fi.ModTime().UTC().Format(http.TimeFormat)

	tests := []struct {
		name       string
		path       string
		method     string
		rangeHdr   string
		ifRange    string
		wantStatus int
		wantBody   []byte
	}{
		{"whole file", last.DownloadURL, http.MethodGet, "", "", http.StatusOK, content},
		{"range", last.DownloadURL, http.MethodGet, "bytes=100-109", "", http.StatusPartialContent, content[100:110]},
		{"resume", last.DownloadURL, http.MethodGet, "bytes=9990-", "", http.StatusPartialContent, content[9990:]},
		{"resume of a changed file", last.DownloadURL, http.MethodGet, "bytes=9990-", "Mon, 02 Jan 2006 15:04:05 GMT", http.StatusOK, content},
		{"resume of the same file", last.DownloadURL, http.MethodGet, "bytes=9990-", modTime, http.StatusPartialContent, content[9990:]},
		{"head", last.DownloadURL, http.MethodHead, "", "", http.StatusOK, nil},
		{"unknown token", "/api/v1/downloads/" + string(bytes.Repeat([]byte("A"), 43)), http.MethodGet, "", "", http.StatusNotFound, nil},
		{"malformed token", "/api/v1/downloads/x", http.MethodGet, "", "", http.StatusNotFound, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := fetch(t, srv.Client(), tt.method, srv.URL+tt.path, "Range", tt.rangeHdr, "If-Range", tt.ifRange)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == http.StatusNotFound {
				var e contract.Error
				if err := json.Unmarshal(body, &e); err != nil || e.Code != contract.CodeNotFound {
					t.Errorf("body = %s, want a not_found error", body)
				}
				return
			}
			if !bytes.Equal(body, tt.wantBody) {
				t.Errorf("body has %d bytes, want %d", len(body), len(tt.wantBody))
			}
			if got, want := resp.Header.Get("Content-Disposition"), `attachment; filename=big.ms`; got != want {
				t.Errorf("Content-Disposition = %q, want %q", got, want)
			}
			if tt.method == http.MethodHead && resp.ContentLength != int64(len(content)) {
				t.Errorf("HEAD Content-Length = %d, want %d", resp.ContentLength, len(content))
			}
		})
	}
}

func TestDirectDownloadOfDirectory(t *testing.T) {
	s := startStager(t, nil)
	s.write(t, "run/a.txt", "a")
	s.write(t, "run/sub/b.txt", "bb")
	id := s.submit(t, contract.MethodDirectDownload, "run", "run")
	evs := s.events(t, contract.EventSubject(id))
	last := evs[len(evs)-1]
	if last.Outcome != contract.OutcomeLinkIssued {
		t.Fatalf("last event = %+v", last)
	}
	h := s.downloadHandler(t, prometheus.NewRegistry())
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, body := fetch(t, srv.Client(), http.MethodGet, srv.URL+last.DownloadURL)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	got, err := untar(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"run/ ", "run/a.txt a", "run/sub/ ", "run/sub/b.txt bb"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("archive (-got +want):\n%s", diff)
	}
}

// untar reads the tar archive r as its entries in order, each "name
// content" (a directory's content empty), up to the error that ends it
// early, if any.
func untar(r io.Reader) ([]string, error) {
	var got []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return got, err
		}
		got = append(got, hdr.Name+" "+string(b))
	}
}

// fetch makes a request with the given header names and values (a header
// whose value is empty is left out) and returns the response, its body read
// and closed.
func fetch(t *testing.T, c *http.Client, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] != "" {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}
