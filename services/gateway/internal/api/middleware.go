package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
)

// HeaderRequestID carries the request id on requests and responses.
const HeaderRequestID = "X-Request-Id"

// A caller's own request id is kept when it is short and plain, so it can
// go into logs without escaping.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	routeKey
)

// RequestID returns the request id of an HTTP request's context.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

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

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_http_requests_total",
			Help: "HTTP requests answered by the gateway, by route template, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "staging_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"route", "method"}),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or reuses the collector already registered under
// the same description: building a second handler on the same registry (the
// all-in-one, tests) must not fail.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("register http metrics: %w", err)
	}
	return c, nil
}

// instrument gives every request an id, a server span continuing the
// caller's trace, an access log line, metrics and panic recovery.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if !requestIDRE.MatchString(id) {
			id = uuid.NewString()
		}
		w.Header().Set(HeaderRequestID, id)
		info := &routeInfo{}
		ctx := context.WithValue(r.Context(), requestIDKey, id)
		ctx = context.WithValue(ctx, routeKey, info)
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, "HTTP "+r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()

		rec := &recorder{ResponseWriter: w}
		func() {
			defer func() {
				if v := recover(); v != nil {
					if v == http.ErrAbortHandler {
						panic(v)
					}
					s.log.ErrorContext(ctx, "http_panic", "request_id", id, "panic", fmt.Sprint(v))
					if !rec.wroteHeader {
						writeError(rec, r.WithContext(ctx), contract.Errorf(contract.CodeInternal, "internal error"))
					}
				}
			}()
			next.ServeHTTP(rec, r.WithContext(ctx))
		}()

		route := info.template
		if route == "" {
			route = "unmatched"
		}
		status := rec.status()
		elapsed := time.Since(start)
		span.SetName(r.Method + " " + route)
		span.SetAttributes(
			attribute.String("http.request.method", r.Method),
			attribute.String("http.route", route),
			attribute.Int("http.response.status_code", status),
			attribute.String("request_id", id),
		)
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		s.metrics.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
		s.metrics.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
		// Only the route template is logged, never the path or query: they
		// carry download tokens and the seed's jupyter_token.
		level := slog.LevelInfo
		if opsRoutes[route] {
			level = slog.LevelDebug
		}
		attrs := []any{
			"request_id", id,
			"method", r.Method,
			"route", route,
			"status", status,
			"bytes", rec.written,
			"duration_ms", float64(elapsed.Microseconds()) / 1000,
		}
		if info.user != "" {
			attrs = append(attrs, "user", info.user)
		}
		s.log.Log(ctx, level, "http_request", attrs...)
	})
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
