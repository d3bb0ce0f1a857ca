package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

const fileContent = "SIMPLE  =                    T / FITS file bytes"

// stagerDownloads stands in for the stager's download listener: it serves
// one token with Range support, as http.ServeContent does.
func stagerDownloads(t *testing.T) http.Handler {
	t.Helper()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/downloads/tok123" {
			// As the stager answers: a JSON error.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"code":"not_found","detail":"no such link"}`))
			return
		}
		w.Header().Set("Content-Type", "image/fits")
		http.ServeContent(w, r, "f.fits", time.Time{}, strings.NewReader(fileContent))
	})
}

func downloadWorker(cmd contract.Command) contract.Event {
	return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeLinkIssued, DownloadURL: "/api/v1/downloads/tok123"}
}

func TestDirectDownload(t *testing.T) {
	stager := httptest.NewServer(stagerDownloads(t))
	t.Cleanup(stager.Close)
	setups := map[string]func(t *testing.T) *env{
		"proxied to the stager": func(t *testing.T) *env {
			return newEnv(t, gateway.Config{StagerDownloadURL: stager.URL, StageWaitTimeout: 10 * time.Second})
		},
		"handler mounted in process": func(t *testing.T) *env {
			return newEnv(t, gateway.Config{StagerDownloadURL: "http://127.0.0.1:1", StageWaitTimeout: 10 * time.Second},
				gateway.WithDownloads(stagerDownloads(t)))
		},
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			e := setup(t)
			e.startWorker(downloadWorker)

			resp := e.do(http.MethodPost, "/stage_data?method=direct_download&username=alice", `{"local_path_on_storage":"/mnt/a/f.fits","relative_path":"dir/f.fits"}`)
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d: %s", resp.status, resp.body)
			}
			if got := string(resp.body); got != fileContent {
				t.Errorf("body = %q, want the file", got)
			}
			if got := resp.header.Get("Content-Type"); got != "application/octet-stream" {
				t.Errorf("Content-Type = %q", got)
			}
			if got := resp.header.Get("Content-Disposition"); got != `attachment; filename=f.fits` {
				t.Errorf("Content-Disposition = %q", got)
			}

			ranged := e.do(http.MethodGet, "/api/v1/downloads/tok123", "", "Range", "bytes=0-5")
			if ranged.status != http.StatusPartialContent || string(ranged.body) != fileContent[:6] {
				t.Errorf("range: %d %q, want 206 %q", ranged.status, ranged.body, fileContent[:6])
			}
			if missing := e.do(http.MethodGet, "/api/v1/downloads/nope", ""); missing.status != http.StatusNotFound {
				t.Errorf("unknown token: %d", missing.status)
			}
		})
	}
}

func TestDownloadProxyStagerDown(t *testing.T) {
	e := newEnv(t, gateway.Config{StagerDownloadURL: "http://127.0.0.1:1"})
	resp := e.do(http.MethodGet, "/api/v1/downloads/tok", "")
	if resp.status != http.StatusBadGateway || resp.json(t)["code"] != "unavailable" {
		t.Errorf("got %d %s, want 502 unavailable", resp.status, resp.body)
	}
}
