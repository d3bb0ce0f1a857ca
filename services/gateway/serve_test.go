package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
)

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
	e.do(http.MethodGet, "/api/v1/stagings/unknown-id", "", "X-Request-Id", "req-42") // no audit: 503
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
	// Every line logged for a request names its id, the handler's own
	// lines too, without the handler passing it.
	for _, msg := range []string{"http_request", "get_failed"} {
		found := false
		for line := range strings.Lines(logs) {
			var rec struct {
				Msg       string
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg && rec.RequestID == "req-42" {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s line with request_id req-42:\n%s", msg, logs)
		}
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
