package telemetry_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/telemetry"
)

// newTracer returns a tracer provider whose spans end up in the returned
// exporter as soon as they end.
func newTracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	return tp, spans
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

// A call through TraceTransport is a client span, child of the caller's
// (and no span at all outside a trace),
// named as the caller asked, with the method, server and status but not
// the path or query; the server receives the trace; the span lasts until
// the body is closed.
func TestTraceTransport(t *testing.T) {
	tp, spans := newTracer(t)
	telemetry.NewTracerProvider(t.Context(), "test") // installs the W3C propagator
	// The traceparent the server got, by path.
	gotParent := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotParent[r.URL.Path] = r.Header.Get("traceparent")
		if r.URL.Path == "/fail" {
			w.WriteHeader(http.StatusBadGateway)
		}
		io.WriteString(w, "body")
	}))
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: telemetry.TraceTransport(nil, tp)}

	ctx, parent := tp.Tracer("test").Start(t.Context(), "caller")
	req, _ := http.NewRequestWithContext(telemetry.WithSpanName(ctx, "hub get_user"), http.MethodGet, srv.URL+"/hub/api/users/alice?secret=x", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(spans.GetSpans()); n != 0 {
		t.Errorf("%d spans ended before the body was closed, want 0", n)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/fail", strings.NewReader("x"))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Outside any trace: no span.
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/probe", nil)
	if resp, err = client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parent.End()

	got := spans.GetSpans()
	if len(got) != 3 {
		t.Fatalf("%d spans, want 2 calls and the caller", len(got))
	}
	call, failed := got[0], got[1]
	if call.Name != "hub get_user" || failed.Name != "HTTP POST" {
		t.Errorf("span names %q, %q; want %q, %q", call.Name, failed.Name, "hub get_user", "HTTP POST")
	}
	if call.SpanKind != trace.SpanKindClient || call.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("span %q: kind %v, parent %v; want a client span of the caller's %v", call.Name, call.SpanKind, call.Parent.SpanID(), parent.SpanContext().SpanID())
	}
	a := attrs(call)
	if a["http.request.method"].AsString() != "GET" || a["http.response.status_code"].AsInt64() != 200 || a["server.address"].AsString() != "127.0.0.1" {
		t.Errorf("attributes %v, want GET, 200, 127.0.0.1", call.Attributes)
	}
	for _, kv := range call.Attributes {
		if v := kv.Value.String(); strings.Contains(v, "alice") || strings.Contains(v, "secret") {
			t.Errorf("attribute %s = %q records the path or query", kv.Key, v)
		}
	}
	if failed.Status.Code.String() != "Error" {
		t.Errorf("a 502 answer has status %v, want Error", failed.Status)
	}
	if got, want := gotParent["/fail"], failed.SpanContext.TraceID().String(); !strings.Contains(got, want) || !strings.Contains(got, failed.SpanContext.SpanID().String()) {
		t.Errorf("server got traceparent %q, want the call's span of trace %s", got, want)
	}
}

// Without a tracer provider TraceTransport is the base transport itself.
func TestTraceTransportOff(t *testing.T) {
	if got := telemetry.TraceTransport(http.DefaultTransport, nil); got != http.DefaultTransport {
		t.Errorf("TraceTransport(base, nil) = %T, want base", got)
	}
}

// OpenTelemetry's own errors come out as JSON records of the logger.
func TestLogOTelErrors(t *testing.T) {
	var buf bytes.Buffer
	log, closer, err := telemetry.NewLogger(&buf, telemetry.LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	telemetry.LogOTelErrors(log)
	t.Cleanup(func() { telemetry.LogOTelErrors(slogDiscard()) })

	otel.Handle(errors.New("export: connection refused"))

	var rec struct {
		Level, Msg, Component, Error string
	}
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("log %q is not one JSON record: %v", buf.String(), err)
	}
	if rec.Level != "ERROR" || rec.Msg != "otel_error" || rec.Component != "opentelemetry" || rec.Error != "export: connection refused" {
		t.Errorf("record %+v, want an ERROR otel_error of component opentelemetry with the error", rec)
	}
}

// The resource names the service and its version.
func TestTracerProviderResource(t *testing.T) {
	tp, err := telemetry.NewTracerProvider(t.Context(), "stager")
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewInMemoryExporter()
	tp.RegisterSpanProcessor(sdktrace.NewSimpleSpanProcessor(spans))
	t.Cleanup(func() { tp.Shutdown(t.Context()) })
	_, span := tp.Tracer("test").Start(t.Context(), "s")
	span.End()
	got := map[attribute.Key]string{}
	for _, kv := range spans.GetSpans()[0].Resource.Attributes() {
		got[kv.Key] = kv.Value.String()
	}
	if got[semconv.ServiceNameKey] != "stager" || got[semconv.ServiceVersionKey] == "" || got[semconv.ServiceVersionKey] != telemetry.Version() {
		t.Errorf("resource %v, want service.name stager and service.version %q", got, telemetry.Version())
	}
}

// ContinueTrace makes the next span a child of the named one; ids that do
// not parse leave the context alone.
func TestContinueTrace(t *testing.T) {
	tp, spans := newTracer(t)
	const tid, sid = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	_, span := tp.Tracer("test").Start(telemetry.ContinueTrace(t.Context(), tid, sid), "later")
	span.End()
	_, span = tp.Tracer("test").Start(telemetry.ContinueTrace(t.Context(), tid, ""), "alone")
	span.End()
	got := spans.GetSpans()
	if got[0].SpanContext.TraceID().String() != tid || got[0].Parent.SpanID().String() != sid || !got[0].Parent.IsRemote() {
		t.Errorf("span %q: trace %s parent %s, want trace %s parent %s", got[0].Name, got[0].SpanContext.TraceID(), got[0].Parent.SpanID(), tid, sid)
	}
	if got[1].SpanContext.TraceID().String() == tid || got[1].Parent.IsValid() {
		t.Errorf("span %q joined trace %s without a span id", got[1].Name, got[1].SpanContext.TraceID())
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
