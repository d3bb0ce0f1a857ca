// White-box: liveRoutes mounts routes only when configured, so the
// general coverage test does not see them.
package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/services/gateway/internal/live"
	"github.com/skao/skao-staging/services/gateway/internal/logwindow"
)

func TestOpenAPICoversLiveRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	s := &Server{cfg: Config{Events: &live.Handler{}, Logs: logwindow.New(1), UI: http.NotFoundHandler()}}
	r := mux.NewRouter()
	s.liveRoutes(r)
	var got []string
	err := r.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		if tmpl == "/logs" { // the seed's alias without the slash
			return nil
		}
		methods, err := route.GetMethods()
		if err != nil {
			return err
		}
		for _, m := range methods {
			if m == http.MethodHead {
				continue
			}
			got = append(got, m+" "+tmpl)
			if _, ok := doc.Paths[tmpl][strings.ToLower(m)]; !ok {
				t.Errorf("%s %s is not in openapi.json", m, tmpl)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /api/v1/stagings/{id}/events", "GET /api/v1/events", "GET /logs/", "GET /", "GET /ui/{file}"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("live routes (-got +want):\n%s", diff)
	}
}
