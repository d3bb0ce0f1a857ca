package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/cors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
)

// routeInfo is filled by the router once a route matched, so the outer
// middleware, which also sees unmatched requests, can label by template.
type routeInfo struct {
	template string
	// user is the authenticated caller's username, for the access log.
	user string
}

// metrics are the gateway's HTTP metrics.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_http_requests_total",
			Help: "HTTP requests answered by the gateway, by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "staging_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
	}
}

// instrument is what every request passes first: it gets an id and a
// server span continuing the caller's trace, the handler runs with panics
// recovered, and once it has answered the request is observed (span name
// and status, metrics, access log).
//
// Not otelhttp: it puts the request's path on the span (url.path), and
// paths carry download tokens, which the gateway never records.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		r = withRequestID(r, w)
		info := &routeInfo{}
		ctx := context.WithValue(r.Context(), routeKey, info)
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, "HTTP "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		r = r.WithContext(ctx)

		rec := &recorder{ResponseWriter: w}
		s.serveRecovered(rec, r, next)
		s.observe(r, span, info, rec, time.Since(start))
	})
}

// serveRecovered serves r with next and answers a panic as an internal
// error, unless the answer had begun.
func (s *Server) serveRecovered(rec *recorder, r *http.Request, next http.Handler) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.ErrorContext(r.Context(), "http_panic", "panic", fmt.Sprint(v))
			if !rec.wroteHeader {
				writeError(rec, r, contract.Errorf(contract.CodeInternal, "internal error"))
			}
		}
	}()
	next.ServeHTTP(rec, r)
}

// observe names the span of an answered request by its route, and counts
// and logs it. Only the route template is recorded, never the path or
// query: they carry download tokens and the seed's jupyter_token.
func (s *Server) observe(r *http.Request, span trace.Span, info *routeInfo, rec *recorder, elapsed time.Duration) {
	route := info.template
	if route == "" {
		route = "unmatched"
	}
	status := rec.status()
	span.SetName(r.Method + " " + route)
	span.SetAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("http.route", route),
		attribute.Int("http.response.status_code", status),
		attribute.String("request_id", RequestID(r.Context())),
	)
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
	level := slog.LevelInfo
	if opsRoutes[route] {
		level = slog.LevelDebug
	}
	attrs := []any{
		"method", r.Method,
		"route", route,
		"status", status,
		"bytes", rec.written,
		"duration_ms", float64(elapsed.Microseconds()) / 1000,
	}
	if info.user != "" {
		attrs = append(attrs, "user", info.user)
	}
	s.log.Log(r.Context(), level, "http_request", attrs...)
}

// withCORS answers CORS preflights and adds the CORS headers for the
// allowed origins; none configured: no CORS headers at all.
func withCORS(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	return cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost},
		AllowedHeaders: []string{"Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID", "Range", HeaderRequestID, "traceparent", "tracestate"},
		ExposedHeaders: []string{HeaderRequestID, "Location", "Content-Disposition", "Content-Range", "Accept-Ranges", "WWW-Authenticate", headerReplayed},
		// Bearer tokens travel in a header, not in cookies.
		AllowCredentials: false,
		MaxAge:           600,
	}).Handler(next)
}

var opsRoutes = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// routeTemplate records the matched route's template for instrument.
func routeTemplate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info, ok := r.Context().Value(routeKey).(*routeInfo); ok && info != nil && info.template == "" {
			if route := mux.CurrentRoute(r); route != nil {
				if t, err := route.GetPathTemplate(); err == nil {
					info.template = t
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// recorder remembers the status and size of a response.
type recorder struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
	written     int64
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = http.StatusOK, true
	}
	n, err := r.ResponseWriter.Write(b)
	r.written += int64(n)
	return n, err
}

func (r *recorder) status() int {
	if !r.wroteHeader {
		return http.StatusOK
	}
	return r.code
}

// ReadFrom keeps the connection's own ReadFrom (sendfile) reachable for
// files written through the recorder: the stager's download handler with
// STAGING_DOWNLOAD_SENDFILE would otherwise copy in 32 KiB writes.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = http.StatusOK, true
	}
	n, err := io.Copy(r.ResponseWriter, src)
	r.written += n
	return n, err
}

// Unwrap lets http.ResponseController reach Flush through the recorder, so
// proxied downloads stream.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
