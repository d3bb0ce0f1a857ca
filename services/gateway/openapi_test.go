package gateway_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/skao/skao-staging/services/gateway"
	"github.com/skao/skao-staging/services/gateway/internal/api"
)

// TestContractCheckFails proves the check can fail: responses that break
// the document are caught.
func TestContractCheckFails(t *testing.T) {
	json := http.Header{"Content-Type": {"application/json"}}
	tests := []struct {
		name, method, path string
		status             int
		header             http.Header
		body               string
	}{
		{"undocumented status", "GET", "/api/v1/methods", 418, json, `{"code":"x","detail":"y"}`},
		{"missing required field", "POST", "/api/v1/stagings", 202, json, `{"id":"a","status":"queued"}`},
		{"wrong enum", "GET", "/api/v1/jobs/j1", 200, json, `{"job_id":"j1","status":"sideways","counts":{},"items":[]}`},
		{"error without code", "GET", "/api/v1/stagings/x", 404, json, `{"detail":"y"}`},
		{"undocumented media type", "GET", "/docs", 200, http.Header{"Content-Type": {"application/pdf"}}, `%PDF`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := validateResponse(tt.method, tt.path, tt.status, tt.header, []byte(tt.body)); err == nil {
				t.Errorf("%s %s %d %s passed the contract check", tt.method, tt.path, tt.status, tt.body)
			}
		})
	}
	if err := validateResponse("GET", "/api/v1/methods", 200, json, []byte(`{"allowed_methods":["local_copy"]}`)); err != nil {
		t.Errorf("a valid response failed: %v", err)
	}
}

// aliasRoutes are the seed paths also answered without their trailing
// slash; the document names the canonical form only.
var aliasRoutes = map[string]bool{"/stage-data": true, "/config": true, "/config/allowed-methods": true, "/create-file": true, "/logs": true}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	h, err := newHandler(t, gateway.Config{Demo: true}, gateway.WithDownloads(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	lister, ok := h.(interface{ Routes() ([]api.Route, error) })
	if !ok {
		t.Fatalf("the handler %T does not list its routes", h)
	}
	routes, err := lister.Routes()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := api.LoadOpenAPI(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rt := range routes {
		if aliasRoutes[rt.Template] {
			continue
		}
		item := doc.Paths.Value(rt.Template)
		if item == nil {
			t.Errorf("route %s is not in openapi.json", rt.Template)
			continue
		}
		for _, m := range rt.Methods {
			if m == http.MethodHead {
				continue
			}
			n++
			if item.GetOperation(m) == nil {
				t.Errorf("%s %s is not in openapi.json", m, rt.Template)
			}
		}
	}
	// Every documented operation is served, too.
	for path, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			if !slices.ContainsFunc(routes, func(rt api.Route) bool { return rt.Template == path && slices.Contains(rt.Methods, m) }) {
				t.Errorf("openapi.json documents %s %s, which the gateway does not serve", m, path)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d operations checked; the walk is broken", n)
	}
}

func TestOpenAPIServedAndDocsPage(t *testing.T) {
	e := newEnv(t, gateway.Config{}, gateway.WithDownloads(http.NotFoundHandler()))
	served := e.do(http.MethodGet, "/openapi.json", "")
	if served.status != 200 || !bytes.Equal(served.body, api.OpenAPI) {
		t.Errorf("GET /openapi.json: %d, %d bytes; want the document", served.status, len(served.body))
	}
	if _, err := openapi3.NewLoader().LoadFromData(served.body); err != nil {
		t.Errorf("served document does not load: %v", err)
	}

	page := e.do(http.MethodGet, "/docs", "")
	if page.status != 200 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %s", page.status, page.header.Get("Content-Type"))
	}
	html := string(page.body)
	for _, want := range []string{
		"<code>/api/v1/jobs</code>", "<code>/api/v1/stagings/{id}/events</code>", "<code>/stage_data</code>",
		"Idempotency-Key", "jupyter_token", `id="schema-JobSubmitted"`, "&#34;local_path_on_storage&#34;",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("/docs lacks %s", want)
		}
	}
	for _, external := range []string{"<script", "http://", "https://", "src="} {
		if strings.Contains(html, external) {
			t.Errorf("/docs is not self-contained: it holds %q", external)
		}
	}
}
