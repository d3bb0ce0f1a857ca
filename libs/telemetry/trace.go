package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// The attributes a span of a request's work carries, whichever service
// makes it, so that one search finds them all.
const (
	AttrRequestID = attribute.Key("staging.request_id")
	AttrBytes     = attribute.Key("staging.bytes")
	AttrFiles     = attribute.Key("staging.files")
)

// version is the build's version, set at link time with
// -ldflags '-X github.com/skao/skao-staging/libs/telemetry.version=v1.2.3'
// (the Makefile and the Dockerfile do).
var version string

// Version is the version of this build: the one set at link time, else the
// main module's when it was built as a tagged module, else the VCS revision
// Go recorded, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// NewTracerProvider returns a tracer provider for service configured by the
// standard OpenTelemetry variables: when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and OTEL_TRACES_EXPORTER is not
// "none"), spans are exported over OTLP/HTTP; otherwise none are exported,
// but trace ids are still made and propagated so logs and events carry them.
// Its resource names the service and its version (Version). It also
// installs the W3C trace-context propagator globally.
func NewTracerProvider(ctx context.Context, service string) (*sdktrace.TracerProvider, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(Version())))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if exportConfigured() {
		exp, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), nil
}

func exportConfigured() bool {
	if os.Getenv("OTEL_TRACES_EXPORTER") == "none" {
		return false
	}
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// LogOTelErrors sends OpenTelemetry's own errors (an export that failed, a
// collector that cannot be reached) and its internal log to log, as JSON
// records like every other line, instead of plain text on standard error.
// OpenTelemetry's handler is global: the last call wins.
func LogOTelErrors(log *slog.Logger) {
	log = log.With("component", "opentelemetry")
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Error("otel_error", "error", err)
	}))
	// logr's V(n) is slog's level -n: OpenTelemetry's warnings (V(1)) and
	// debug lines show at the debug level only.
	otel.SetLogger(logr.FromSlogHandler(log.Handler()))
}

// ContinueTrace returns ctx as a child of the span named by the hex
// traceID and spanID, which travelled outside any header (in a stored
// record): work done later on behalf of a request then joins the
// request's trace. With ids that are not valid, ctx is returned as it is.
func ContinueTrace(ctx context.Context, traceID, spanID string) context.Context {
	tid, err := trace.TraceIDFromHex(traceID)
	if err != nil {
		return ctx
	}
	sid, err := trace.SpanIDFromHex(spanID)
	if err != nil {
		return ctx
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}
