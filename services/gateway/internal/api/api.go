// Package api is the gateway's HTTP surface: the native /api/v1 API, the
// seed prototype's endpoints kept for its clients, the download proxy and
// the ops endpoints, with the middleware every request goes through
// (request id, trace, access log, metrics).
package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/services/gateway/internal/live"
	"github.com/skao/skao-staging/services/gateway/internal/logwindow"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// DownloadsPrefix is where download links live; the stager issues links
// under it and the gateway serves them there.
const DownloadsPrefix = "/api/v1/downloads/"

// Config is what the API needs. Every field is required unless said.
type Config struct {
	Client *stagings.Client
	Log    *slog.Logger
	Tracer trace.Tracer
	// Registerer takes the HTTP metrics; Gatherer is served on /metrics.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	Health     *telemetry.Health

	StageWaitTimeout time.Duration
	MaxBodyBytes     int64
	SourceRoot       string
	UserAreaRoot     string
	// Demo enables POST /create-file/.
	Demo bool
	// StorageBrowserDisabled turns GET /api/v1/storage off.
	StorageBrowserDisabled bool
	// PublicURL, when set, makes status URLs absolute.
	PublicURL string
	// Downloads serves GET /api/v1/downloads/{token} (full path); nil
	// leaves the route to Routes or unserved.
	Downloads http.Handler
	// Routes, when set, mounts extra routes before the gateway's own, so
	// they take precedence.
	Routes func(*mux.Router)

	// Auth authenticates every request but the open routes, unless it is
	// off.
	Auth Authenticator
	// CORSAllowedOrigins get CORS headers; empty: none.
	CORSAllowedOrigins []string
	// Idempotency remembers Idempotency-Key fingerprints; nil: the header
	// is refused.
	Idempotency IdempotencyStore
	// JobMaxItems bounds the items of one batch job.
	JobMaxItems int

	// Events serves the live event streams (SSE); Logs is the system log
	// window behind GET /logs/; UI is the web UI at / and /ui/. Each nil
	// leaves its routes out.
	Events *live.Handler
	Logs   *logwindow.Window
	UI     http.Handler
}

// Server answers the gateway's HTTP requests.
type Server struct {
	cfg     Config
	client  *stagings.Client
	log     *slog.Logger
	tracer  trace.Tracer
	metrics *metrics
	router  *mux.Router
	handler http.Handler
}

// New builds the gateway's handler.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("api: a stagings client is required")
	case cfg.Log == nil, cfg.Tracer == nil, cfg.Registerer == nil, cfg.Gatherer == nil, cfg.Health == nil, cfg.Auth == nil:
		return nil, errors.New("api: log, tracer, registerer, gatherer, health and auth are required")
	case cfg.MaxBodyBytes <= 0:
		return nil, fmt.Errorf("api: max body bytes must be positive, not %d", cfg.MaxBodyBytes)
	case cfg.StageWaitTimeout <= 0:
		return nil, fmt.Errorf("api: stage wait timeout must be positive, not %s", cfg.StageWaitTimeout)
	case cfg.JobMaxItems <= 0:
		return nil, fmt.Errorf("api: job max items must be positive, not %d", cfg.JobMaxItems)
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	s := &Server{cfg: cfg, client: cfg.Client, log: requestIDLog(cfg.Log), tracer: cfg.Tracer, metrics: newMetrics(cfg.Registerer)}
	s.router = s.routes()
	s.handler = s.instrument(withCORS(cfg.CORSAllowedOrigins, s.router))
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	r.Use(routeTemplate, s.authenticate)
	if s.cfg.Routes != nil {
		s.cfg.Routes(r)
	}

	// Full paths rather than a subrouter: gorilla answers 404 instead of
	// 405 for a wrong method on a subrouter's route.
	r.HandleFunc("/api/v1/stagings", s.submit).Methods(http.MethodPost)
	r.HandleFunc("/api/v1/stagings", s.list).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/stagings/{id}", s.get).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/stagings/{id}", s.cancel).Methods(http.MethodDelete)
	r.HandleFunc("/api/v1/methods", s.methods).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/jobs", s.submitJob).Methods(http.MethodPost)
	r.HandleFunc("/api/v1/jobs/{job_id}", s.getJob).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/storage", s.browseStorage).Methods(http.MethodGet)
	r.HandleFunc("/api/v1/jobs/{job_id}", s.cancelJob).Methods(http.MethodDelete)
	if s.cfg.Downloads != nil {
		r.Handle(DownloadsPrefix+"{token}", s.downloadsFor(s.cfg.Downloads)).Methods(http.MethodGet, http.MethodHead)
	}

	// The seed's paths, with and without the trailing slash its clients
	// may or may not send.
	r.HandleFunc("/stage_data", s.stageData).Methods(http.MethodPost)
	r.HandleFunc("/stage-data/", s.stageData).Methods(http.MethodPost)
	r.HandleFunc("/stage-data", s.stageData).Methods(http.MethodPost)
	r.HandleFunc("/config/", s.config).Methods(http.MethodGet)
	r.HandleFunc("/config", s.config).Methods(http.MethodGet)
	r.HandleFunc("/config/allowed-methods/", s.allowedMethods).Methods(http.MethodGet)
	r.HandleFunc("/config/allowed-methods", s.allowedMethods).Methods(http.MethodGet)
	if s.cfg.Demo {
		r.HandleFunc("/create-file/", s.createFile).Methods(http.MethodPost)
		r.HandleFunc("/create-file", s.createFile).Methods(http.MethodPost)
	}

	s.liveRoutes(r)
	r.HandleFunc("/openapi.json", serveOpenAPI).Methods(http.MethodGet)
	r.HandleFunc("/docs", serveDocs).Methods(http.MethodGet)
	telemetry.Mount(routeAdder{r}, s.cfg.Health, s.cfg.Gatherer)

	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, contract.Errorf(contract.CodeNotFound, "no endpoint %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		allow := strings.Join(routeMethods(r, req), ", ")
		w.Header().Set("Allow", allow)
		writeErrorStatus(w, req, http.StatusMethodNotAllowed,
			contract.Errorf(contract.CodeMethodNotAllowed, "%s does not accept %s, only %s", req.URL.Path, req.Method, allow))
	})
	return r
}

// routeMethods are the methods the routes of router matching req's path
// accept, for a 405's Allow header.
func routeMethods(router *mux.Router, req *http.Request) []string {
	var allow []string
	_ = router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		var m mux.RouteMatch
		if route.Match(req, &m) || errors.Is(m.MatchErr, mux.ErrMethodMismatch) {
			methods, _ := route.GetMethods()
			allow = append(allow, methods...)
		}
		return nil
	})
	slices.Sort(allow)
	return slices.Compact(allow)
}

// routeAdder lets telemetry.Mount register on a gorilla router.
type routeAdder struct{ r *mux.Router }

func (a routeAdder) Handle(pattern string, h http.Handler) {
	a.r.Handle(pattern, h).Methods(http.MethodGet, http.MethodHead)
}

// statusURL is where request id's state is read.
func (s *Server) statusURL(id string) string {
	return s.cfg.PublicURL + "/api/v1/stagings/" + id
}
