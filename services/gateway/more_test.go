package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
)

const fileContent = "SIMPLE  =                    T / FITS file bytes"

// stagerDownloads stands in for the stager's download listener: it serves
// one token with Range support, as http.ServeContent does.
func stagerDownloads(t *testing.T) http.Handler {
	t.Helper()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/downloads/tok123" {
			http.Error(w, `{"code":"not_found","detail":"no such link"}`, http.StatusNotFound)
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

func TestConfigEndpoints(t *testing.T) {
	e := newEnv(t, gateway.Config{
		AllowedMethods: []string{"local_copy", "direct_download"}, SourceRoot: "/mnt/storage_a", UserAreaRoot: "/users",
		StageWaitTimeout: 45 * time.Second,
	})
	tests := []struct {
		path string
		want map[string]any
	}{
		{"/config/", map[string]any{
			"source_storage_path": "/mnt/storage_a", "target_storage_path": "/users",
			"allowed_methods": []any{"local_copy", "direct_download"}, "stage_wait_timeout": "45s",
			"max_body_bytes": 1048576.0, "demo": false,
		}},
		{"/config/allowed-methods/", map[string]any{"allowed_methods": []any{"local_copy", "direct_download"}}},
		{"/api/v1/methods", map[string]any{"allowed_methods": []any{"local_copy", "direct_download"}}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp := e.do(http.MethodGet, tt.path, "")
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d", resp.status)
			}
			if diff := cmp.Diff(tt.want, resp.json(t)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestCreateFile(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		e := newEnv(t, gateway.Config{SourceRoot: t.TempDir()})
		resp := e.do(http.MethodPost, "/create-file/", `{"path":"a.txt","content":"x"}`)
		if resp.status != http.StatusNotFound || resp.json(t)["code"] != "not_found" {
			t.Errorf("got %d %s, want 404 not_found", resp.status, resp.body)
		}
	})

	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "kept.txt"), []byte("site data"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, gateway.Config{SourceRoot: root, Demo: true})
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"nested file", `{"path":"obs/1/a.txt","content":"hello"}`, 201, ""},
		{"climbs out", `{"path":"../a.txt","content":"x"}`, 400, "invalid_path"},
		{"absolute", `{"path":"/etc/x","content":"x"}`, 400, "invalid_path"},
		{"through a symlink", `{"path":"escape/a.txt","content":"x"}`, 400, "invalid_path"},
		{"through a symlink, nested", `{"path":"escape/b/c.txt","content":"x"}`, 400, "invalid_path"},
		{"existing file", `{"path":"kept.txt","content":"x"}`, 409, "target_conflict"},
		{"the file made before", `{"path":"obs/1/a.txt","content":"again"}`, 409, "target_conflict"},
		{"too large", fmt.Sprintf(`{"path":"big","content":%q}`, strings.Repeat("a", gatewayDemoLimit+1)), 413, "body_too_large"},
		{"malformed", `{"path":`, 422, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodPost, "/create-file/", tt.body)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantCode != "" && resp.json(t)["code"] != tt.wantCode {
				t.Errorf("code = %v, want %s", resp.json(t)["code"], tt.wantCode)
			}
		})
	}
	got, err := os.ReadFile(filepath.Join(root, "obs/1/a.txt"))
	if err != nil || string(got) != "hello" {
		t.Errorf("created file = %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "kept.txt")); err != nil || string(got) != "site data" {
		t.Errorf("existing file = %q, %v; want it untouched", got, err)
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
		t.Errorf("something was written outside the root: %v %v", entries, err)
	}
}

const gatewayDemoLimit = 64 << 10

func TestExtraRoutesAndErrors(t *testing.T) {
	e := newEnv(t, gateway.Config{}, gateway.WithRoutes(func(r *mux.Router) {
		r.HandleFunc("/extra/{name}", func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.WriteString(w, "hi "+mux.Vars(r)["name"]); err != nil {
				t.Error(err)
			}
		})
	}))
	if resp := e.do(http.MethodGet, "/extra/bob", ""); resp.status != 200 || string(resp.body) != "hi bob" {
		t.Errorf("extra route: %d %q", resp.status, resp.body)
	}
	if resp := e.do(http.MethodGet, "/nowhere", ""); resp.status != 404 || resp.json(t)["code"] != "not_found" || resp.header.Get("X-Request-Id") == "" {
		t.Errorf("unknown path: %d %s %v", resp.status, resp.body, resp.header)
	}
	if resp := e.do(http.MethodDelete, "/api/v1/stagings", ""); resp.status != 405 || resp.json(t)["code"] == nil {
		t.Errorf("wrong method: %d %s", resp.status, resp.body)
	}
	if resp := e.do(http.MethodGet, "/healthz", ""); resp.status != 200 {
		t.Errorf("healthz: %d", resp.status)
	}
	if resp := e.do(http.MethodGet, "/readyz", ""); resp.status != 200 {
		t.Errorf("readyz: %d %s", resp.status, resp.body)
	}
}

func TestMetricsAndAccessLog(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	e.do(http.MethodPost, "/api/v1/stagings", validBody)
	e.do(http.MethodGet, "/api/v1/stagings/unknown-id", "") // no audit: 503
	metrics := string(e.do(http.MethodGet, "/metrics", "").body)
	for _, want := range []string{
		`staging_http_requests_total{method="POST",route="/api/v1/stagings",status="202"} 1`,
		`staging_http_requests_total{method="GET",route="/api/v1/stagings/{id}",status="503"} 1`,
		`staging_http_request_duration_seconds_count{method="POST",route="/api/v1/stagings"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	logs := e.logs.String()
	for _, want := range []string{`"msg":"http_request"`, `"route":"/api/v1/stagings/{id}"`, `"status":503`} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "unknown-id") {
		t.Error("the access log holds the raw path")
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A second gateway in the process registers its metrics on a registry
	// of its own.
	deps := e.deps
	deps.Registerer = prometheus.NewRegistry()
	done := make(chan error, 1)
	go func() { done <- gateway.Run(ctx, gateway.Config{HTTPAddr: "127.0.0.1:0"}, deps) }()

	addr := ""
	testenv.Eventually(t, 5*time.Second, "the gateway to listen", func() bool {
		for line := range strings.Lines(e.logs.String()) {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "http_listening" {
				addr = rec.Addr
			}
		}
		return addr != ""
	})
	resp, err := http.Get("http://" + addr + "/api/v1/methods")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
