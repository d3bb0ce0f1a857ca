package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/telemetry"
)

// Deps is what a service's Run receives from its binary: the standalone
// main or the all-in-one. Everything here is shared, never owned: the
// caller closes it after Run returns.
type Deps struct {
	Log *slog.Logger
	NC  *nats.Conn
	JS  jetstream.JetStream
	// Registerer takes the service's metrics.
	Registerer prometheus.Registerer
	// Tracer makes the service's spans.
	Tracer trace.TracerProvider
	// Health takes the service's readiness checks.
	Health *telemetry.Health
	// HTTP bounds the connections of the service's HTTP servers (zero
	// fields: the defaults).
	HTTP HTTPTimeouts
}

// Runtime is a started process: logger, tracing, NATS with the streams in
// place, metrics and health. Close it last.
type Runtime struct {
	Deps
	Registry       *prometheus.Registry
	TracerProvider *sdktrace.TracerProvider
	logCloser      io.Closer
}

// Start builds the runtime of the process named name from base, with logs
// written to logOut; natsOpts add to the NATS connection's options (the
// all-in-one connects to its embedded server in-process).
func Start(ctx context.Context, name string, base Base, logOut io.Writer, natsOpts ...nats.Option) (*Runtime, error) {
	// Every record also goes to NATS (staging.logs.<name>) for the
	// gateway's GET /logs/ window, once connected; never blocking.
	logPub := telemetry.NewLogPublisher(name, 0)
	log, closer, err := telemetry.NewLogger(io.MultiWriter(logOut, logPub), telemetry.LogConfig{Level: base.LogLevel, File: base.LogFile})
	if err != nil {
		return nil, err
	}
	closer = telemetry.JoinClosers(logPub, closer)
	log = log.With("service", name)
	telemetry.LogOTelErrors(log)
	tp, err := telemetry.NewTracerProvider(ctx, name)
	if err != nil {
		closer.Close()
		return nil, err
	}
	otel.SetTracerProvider(tp)
	rt := &Runtime{
		Registry:       telemetry.NewRegistry(),
		TracerProvider: tp,
		logCloser:      closer,
	}
	rt.Log, rt.Tracer, rt.Health, rt.Registerer = log, tp, telemetry.NewHealth(), rt.Registry
	rt.HTTP = base.HTTP
	if err := rt.connect(ctx, name, base, natsOpts); err != nil {
		rt.Close(ctx)
		return nil, err
	}
	logPub.Attach(rt.NC)
	return rt, nil
}

func (rt *Runtime) connect(ctx context.Context, name string, base Base, natsOpts []nats.Option) error {
	auth, err := natsAuth(base)
	if err != nil {
		return err
	}
	if auth != nil {
		natsOpts = append(natsOpts, auth)
	}
	nc, err := bus.Connect(cmp.Or(base.NATSURL, nats.DefaultURL), name, rt.Log, natsOpts...)
	if errors.Is(err, nats.ErrAuthorization) {
		return fmt.Errorf("%w (%s)", err, credentialsHint(base))
	}
	if err != nil {
		return err
	}
	rt.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	rt.JS = js
	sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(sctx, js, bus.StreamOptions{
		EventsMaxAge: base.EventsMaxAge, Replicas: base.StreamReplicas,
		RequestsMaxAge: base.RequestsMaxAge, RequestsMaxMsgs: base.RequestsMaxMsgs, RequestsMaxBytes: base.RequestsMaxBytes,
	}); err != nil {
		return err
	}
	rt.Health.Add("nats", telemetry.NATSCheck(nc))
	return nil
}

// OpsHandler serves /healthz, /readyz and /metrics.
func (rt *Runtime) OpsHandler() http.Handler {
	mux := http.NewServeMux()
	telemetry.Mount(mux, rt.Health, rt.Registry)
	return mux
}

// Serve runs an HTTP server for h on addr, its connections bounded by
// timeouts, until ctx ends, then shuts it down gracefully, giving in-flight
// requests up to grace.
func Serve(ctx context.Context, log *slog.Logger, what, addr string, h http.Handler, grace time.Duration, timeouts HTTPTimeouts) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener on %s: %w", what, addr, err)
	}
	return ServeListener(ctx, log, what, ln, h, grace, timeouts)
}

// ServeListener is Serve on an open listener.
func ServeListener(ctx context.Context, log *slog.Logger, what string, ln net.Listener, h http.Handler, grace time.Duration, timeouts HTTPTimeouts) error {
	srv := newServer(h, timeouts)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http_listening", "server", what, "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("%s server: %w", what, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("%s server shutdown: %w", what, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("%s server: %w", what, err)
	}
	return nil
}

// Close flushes traces, drains the NATS connection and closes the log file.
func (rt *Runtime) Close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if rt.TracerProvider != nil {
		if err := rt.TracerProvider.Shutdown(ctx); err != nil {
			rt.Log.Warn("trace_flush_failed", "error", err)
		}
	}
	if rt.NC != nil {
		if err := rt.NC.Drain(); err != nil {
			rt.Log.Warn("nats_drain_failed", "error", err)
		}
	}
	if rt.logCloser != nil {
		rt.logCloser.Close()
	}
}
