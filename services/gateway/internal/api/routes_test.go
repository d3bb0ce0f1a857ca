// White-box: the router is not exported, and the test must see every route
// it holds to prove the OpenAPI document covers them all.
package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/services/gateway/internal/auth"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// aliases are the seed paths also answered without their trailing slash;
// the document names the canonical form only.
var aliases = map[string]bool{"/stage-data": true, "/config": true, "/config/allowed-methods": true, "/create-file": true}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	reg := prometheus.NewRegistry()
	off, err := auth.New(auth.Config{Mode: auth.ModeNone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Client: stagings.New(nil, nil, contract.MethodSet(contract.Methods), time.Second),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)), Tracer: noop.NewTracerProvider().Tracer(""),
		Registerer: reg, Gatherer: reg, Health: telemetry.NewHealth(),
		StageWaitTimeout: time.Second, MaxBodyBytes: 1024, JobMaxItems: 10, Demo: true, Downloads: http.NotFoundHandler(),
		Auth: off,
	})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	err = s.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil || aliases[tmpl] {
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			t.Errorf("route %s has no methods", tmpl)
			return nil
		}
		item, ok := doc.Paths[tmpl]
		if !ok {
			t.Errorf("route %s is not in openapi.json", tmpl)
			return nil
		}
		if _, isRef := item["$ref"]; isRef {
			n++
			return nil
		}
		for _, m := range methods {
			if m == http.MethodHead {
				continue
			}
			n++
			if _, ok := item[strings.ToLower(m)]; !ok {
				t.Errorf("%s %s is not in openapi.json", m, tmpl)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("only %d routes checked; the walk is broken", n)
	}
}
