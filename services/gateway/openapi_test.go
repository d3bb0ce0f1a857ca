package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/services/gateway"
	"github.com/skao/skao-staging/services/gateway/internal/api"
)

// apiDoc is the OpenAPI document every response the tests get is checked
// against (with kin-openapi), so the document and the implementation
// cannot drift apart.
var apiDoc = sync.OnceValues(func() (routers.Router, error) {
	// Streams and pages are text: checked for their media type only.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	doc, err := api.LoadOpenAPI(context.Background())
	if err != nil {
		return nil, err
	}
	return gorillamux.NewRouter(doc)
})

// checkContract validates a response to method path against the document:
// a documented operation must document the status, and the body must match
// the schema of its media type. Paths and operations the document does not
// hold (test routes, unknown paths, wrong methods) are not checked.
func checkContract(method, path string, r response) error {
	return validateResponse(method, path, r.status, r.header, r.body)
}

func validateResponse(method, path string, status int, header http.Header, body []byte) error {
	router, err := apiDoc()
	if err != nil {
		return fmt.Errorf("openapi.json: %w", err)
	}
	req, err := http.NewRequest(method, "http://gateway"+path, nil)
	if err != nil {
		return err
	}
	route, params, err := router.FindRoute(req)
	if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s %d does not match openapi.json (%s): %w\n%s", method, path, status, route.Path, err, body)
	}
	return nil
}

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

// newDocGateway is a gateway with every optional part on, over an embedded
// NATS server, for the document tests.
func newDocGateway(t *testing.T, cfg gateway.Config) http.Handler {
	t.Helper()
	nc, js := natstest.JetStream(t)
	reg := prometheus.NewRegistry()
	h, err := gateway.NewHandler(cfg, service.Deps{
		Log: slog.New(slog.DiscardHandler), NC: nc, JS: js,
		Registerer: reg, Health: telemetry.NewHealth(),
	}, gateway.WithDownloads(http.NotFoundHandler()))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// aliasRoutes are the seed paths also answered without their trailing
// slash; the document names the canonical form only.
var aliasRoutes = map[string]bool{"/stage-data": true, "/config": true, "/config/allowed-methods": true, "/create-file": true, "/logs": true}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	h := newDocGateway(t, gateway.Config{Demo: true})
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
	ts := httptest.NewServer(newDocGateway(t, gateway.Config{}))
	t.Cleanup(ts.Close)
	get := func(path string) (int, http.Header, []byte) {
		t.Helper()
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		if _, err := b.ReadFrom(resp.Body); err != nil {
			t.Fatal(err)
		}
		if err := validateResponse("GET", path, resp.StatusCode, resp.Header, b.Bytes()); err != nil {
			t.Error(err)
		}
		return resp.StatusCode, resp.Header, b.Bytes()
	}
	status, _, body := get("/openapi.json")
	if status != 200 || !bytes.Equal(body, api.OpenAPI) {
		t.Errorf("GET /openapi.json: %d, %d bytes; want the document", status, len(body))
	}
	if _, err := openapi3.NewLoader().LoadFromData(body); err != nil {
		t.Errorf("served document does not load: %v", err)
	}

	status, header, page := get("/docs")
	if status != 200 || !strings.HasPrefix(header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %s", status, header.Get("Content-Type"))
	}
	html := string(page)
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
