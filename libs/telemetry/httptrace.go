package telemetry

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

type spanNameKey struct{}

// WithSpanName names the client span of the HTTP requests made with ctx
// through a TraceTransport (such as "hub get_user").
func WithSpanName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, spanNameKey{}, name)
}

// TraceTransport returns base (http.DefaultTransport when nil) with a
// client span of tp around each request made within a trace, from its
// start to the close of its response body, the trace sent on in the traceparent header. The span
// is named by WithSpanName, else "HTTP <method>". It records the method,
// the server's address and the status, never the path or query: they may
// carry user names, file names or tokens. With tp nil it returns base.
//
// Not otelhttp, for that reason: it records the whole URL.
func TraceTransport(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	if tp == nil {
		return base
	}
	return &traceTransport{base: base, tracer: tp.Tracer("skao-staging/http-client")}
}

type traceTransport struct {
	base   http.RoundTripper
	tracer trace.Tracer
}

func (t *traceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A call made outside any trace (a readiness probe) would start a
	// trace of its own for every probe: it is not traced.
	if !trace.SpanContextFromContext(req.Context()).IsValid() {
		return t.base.RoundTrip(req)
	}
	name, _ := req.Context().Value(spanNameKey{}).(string)
	if name == "" {
		name = "HTTP " + req.Method
	}
	attrs := []attribute.KeyValue{attribute.String("http.request.method", req.Method)}
	if host, port, err := net.SplitHostPort(req.URL.Host); err == nil {
		attrs = append(attrs, attribute.String("server.address", host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	} else {
		attrs = append(attrs, attribute.String("server.address", req.URL.Host))
	}
	ctx, span := t.tracer.Start(req.Context(), name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	// A RoundTripper must not change the request it is given.
	req = req.Clone(ctx)
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "no response")
		span.End()
		return nil, err
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
	if resp.StatusCode >= 500 {
		span.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
	}
	if resp.Body == nil || resp.Body == http.NoBody {
		span.End()
		return resp, nil
	}
	resp.Body = &spanBody{ReadCloser: resp.Body, span: span}
	return resp, nil
}

// spanBody ends its span when the response body is closed: a streamed
// answer (a spawn's progress) is part of the call.
type spanBody struct {
	io.ReadCloser
	span trace.Span
	once sync.Once
}

func (b *spanBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() { b.span.End() })
	return err
}
