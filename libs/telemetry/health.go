package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors. main creates it and passes a prometheus.Registerer down.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// Health collects the readiness checks of the services in a process.
type Health struct {
	mu     sync.Mutex
	names  []string
	checks map[string]Check
}

// NewHealth returns an empty set of checks.
func NewHealth() *Health { return &Health{checks: map[string]Check{}} }

// Add registers a readiness check under name.
func (h *Health) Add(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.checks[name]; !ok {
		h.names = append(h.names, name)
	}
	h.checks[name] = c
}

// Ready runs every check and returns each failure by name.
func (h *Health) Ready(ctx context.Context) map[string]string {
	h.mu.Lock()
	names := append([]string(nil), h.names...)
	checks := make([]Check, len(names))
	for i, n := range names {
		checks[i] = h.checks[n]
	}
	h.mu.Unlock()
	failed := map[string]string{}
	for i, c := range checks {
		if err := c(ctx); err != nil {
			failed[names[i]] = err.Error()
		}
	}
	return failed
}

// NATSCheck is ready while nc is connected.
func NATSCheck(nc *nats.Conn) Check {
	return func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return errors.New("nats " + s.String())
		}
		return nil
	}
}

// Mount registers /healthz (the process runs), /readyz (every check passes)
// and /metrics on mux.
func Mount(mux interface {
	Handle(pattern string, h http.Handler)
}, h *Health, g prometheus.Gatherer) {
	mux.Handle("/healthz", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	mux.Handle("/readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if failed := h.Ready(ctx); len(failed) > 0 {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "failed": failed})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}))
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
