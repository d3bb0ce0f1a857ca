// Package worker is the skeleton every staging worker shares. It takes
// commands from the work queue, validates each exactly as any other entry
// point would, checks the site's allowed methods, publishes the request's
// started, resolved, progress and final events, keeps the request metrics, and tells
// the acknowledgement policy whether a failure is worth a retry. A service
// supplies only the work of its methods, as a StageFunc.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/telemetry"
)

// StageFunc does the work of one validated command whose method the worker
// carries out. It returns an error carrying a contract code when the
// request can never succeed (see Handle for what is retried), and reports
// how the work goes through report.
type StageFunc func(ctx context.Context, cmd contract.Command, report *Reporter) (Result, error)

// Result is what a successful StageFunc did; it becomes the succeeded
// event. Outcome is required.
type Result struct {
	Outcome contract.Outcome
	Bytes   int64
	Files   int64
	Adler32 string
	// DownloadURL is the path of an issued download link.
	DownloadURL string
	// ExpiresAt is when the staged item is removed, or the download link
	// ends; zero for never.
	ExpiresAt time.Time
	// Message tells a person what happened.
	Message string
}

// Options configures a Worker. Source, Methods, Stage, JS, Log and
// Registerer are required; Durable, AckWait and MaxDeliver too for Run.
type Options struct {
	// Source names the service in events, spans and logs ("stager").
	Source string
	// Methods are the methods Stage carries out. The worker's consumer
	// takes their subjects, and a command naming another method is
	// rejected with invalid_method.
	Methods contract.MethodSet
	// Allowed, when not nil, is the site's set of allowed methods: a
	// command naming another is rejected with method_not_allowed.
	Allowed contract.MethodSet
	Stage   StageFunc

	JS     jetstream.JetStream
	Log    *slog.Logger
	Tracer trace.Tracer // default: no spans
	// Registerer takes the request metrics: MetricPrefix followed by
	// _requests_total{method,outcome}, _duration_seconds{method} and
	// _in_flight.
	Registerer   prometheus.Registerer
	MetricPrefix string // e.g. "staging_stager"
	// DurationBuckets are the buckets of _duration_seconds (default 5 ms
	// times powers of 4, ten buckets).
	DurationBuckets []float64
	// ProgressEvery spaces the progress events of one request (default
	// DefaultProgressEvery).
	ProgressEvery time.Duration

	// Durable names the worker's consumer on STAGING_REQUESTS.
	Durable string
	// Concurrency is how many commands this process works on at once
	// (default 1); it takes no more from the consumer than that.
	Concurrency int
	// MaxAckPending bounds the commands out at once to all the processes
	// sharing the consumer together, a site-wide limit (0: the server's
	// default, 1000).
	MaxAckPending int
	// AckWait and MaxDeliver configure the consumer. A transient failure
	// on the last allowed delivery ends the request as failed.
	AckWait    time.Duration
	MaxDeliver int
	// Timeout bounds one delivery (default: see bus.AckPolicy).
	Timeout time.Duration
}

// DefaultProgressEvery is the default spacing of progress events.
const DefaultProgressEvery = time.Second

// Worker handles the commands of one service's methods.
type Worker struct {
	o       Options
	metrics *metrics

	streams bus.Streams
	runs    running // the requests this process works on
}

// New checks o and registers the request metrics.
func New(o Options) (*Worker, error) {
	switch {
	case o.Source == "":
		return nil, errors.New("worker: Source is required")
	case len(o.Methods) == 0:
		return nil, errors.New("worker: Methods is required")
	case o.Stage == nil:
		return nil, errors.New("worker: Stage is required")
	case o.JS == nil || o.Log == nil || o.Registerer == nil:
		return nil, errors.New("worker: JS, Log and Registerer are required")
	case o.MetricPrefix == "":
		return nil, errors.New("worker: MetricPrefix is required")
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider().Tracer("")
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	return &Worker{o: o, metrics: newMetrics(o.Registerer, o.MetricPrefix, o.Source, o.DurationBuckets, o.Methods)}, nil
}

// recordedError is a failure whose event has already been published, so
// OnFailure must not publish another.
type recordedError struct{ err error }

func (e recordedError) Error() string { return e.err.Error() }
func (e recordedError) Unwrap() error { return e.err }

// Handle runs one command; it is a bus.Handler. A command whose request
// was cancelled is not started; a running one whose request is cancelled
// is stopped and ends cancelled (see cancel.go). A command that fails
// validation, was published on another method's subject, or names a method
// the worker does not carry out or the site does not allow is rejected. A
// command reusing the id of another request is rejected under a fresh id
// (see conflict); one repeating a request that has ended, or that another
// copy is working on, is acknowledged and nothing more. A StageFunc error
// carrying a contract code is permanent, except unavailable and timeout
// codes; any other error is retried until the last allowed delivery.
// Permanent and final failures are published as failed events here, once.
func (w *Worker) Handle(ctx context.Context, msg jetstream.Msg) error {
	attempt := attemptOf(msg)
	ctx, span := w.o.Tracer.Start(ctx, w.o.Source+".handle", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()

	cmd, invalid := contract.DecodeCommand(msg.Data())
	if invalid == nil {
		invalid = w.accept(msg.Subject(), cmd.Method)
	}
	// Registered before its cancel request is read (in start), so that a
	// cancel is either read there or heard by listenCancels.
	stageCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	defer w.runs.add(cmd.ID, stop)()
	startCtx, startSpan := w.o.Tracer.Start(ctx, w.o.Source+".start")
	proceed, err := w.start(startCtx, msg, cmd, attempt, invalid)
	startSpan.End()
	if !proceed {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		return err
	}
	span.SetAttributes(telemetry.AttrRequestID.String(cmd.ID), attribute.String("staging.method", string(cmd.Method)), attribute.Int("staging.attempt", attempt))
	w.metrics.inFlight.Inc()
	began := time.Now()
	res, err := w.o.Stage(stageCtx, cmd, w.reporter(ctx, cmd, attempt))
	w.metrics.inFlight.Dec()
	w.metrics.duration.WithLabelValues(string(cmd.Method)).Observe(time.Since(began).Seconds())

	if c := cancelledBy(stageCtx); c != nil && err != nil {
		// The StageFunc stopped and removed what it had written. A
		// StageFunc that finished all the same has staged the item: its
		// success stands.
		return w.publishCancelled(ctx, w.event(ctx, cmd, contract.EventCancelled, attempt), *c, attempt)
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if !permanent(err) && (w.o.MaxDeliver <= 0 || attempt < w.o.MaxDeliver) {
			w.o.Log.WarnContext(ctx, "staging_retry", logFields(cmd, attempt, "error", err)...)
			return err
		}
		return w.fail(ctx, cmd, attempt, err)
	}
	span.SetAttributes(telemetry.AttrBytes.Int64(res.Bytes), telemetry.AttrFiles.Int64(res.Files), attribute.String("staging.outcome", string(res.Outcome)))
	ev := w.event(ctx, cmd, contract.EventSucceeded, attempt)
	ev.Outcome, ev.Bytes, ev.Files, ev.Adler32, ev.Message, ev.DownloadURL = res.Outcome, res.Bytes, res.Files, res.Adler32, res.Message, res.DownloadURL
	if !res.ExpiresAt.IsZero() {
		ev.ExpiresAt = new(res.ExpiresAt.UTC())
	}
	pubCtx, pubSpan := w.o.Tracer.Start(ctx, w.o.Source+".publish_outcome")
	err = bus.PublishEvent(pubCtx, w.o.JS, ev)
	pubSpan.End()
	if err != nil {
		// Redelivery is safe: the target is now present.
		return fmt.Errorf("publish succeeded event: %w", err)
	}
	w.metrics.requests.WithLabelValues(string(cmd.Method), string(res.Outcome)).Inc()
	w.o.Log.InfoContext(ctx, "staging_succeeded", logFields(cmd, attempt, "outcome", res.Outcome, "bytes", res.Bytes, "files", res.Files)...)
	return nil
}

// logFields are the fields of a line about cmd, then args. They go on each
// line written, not into a logger made for every command: most commands
// write no line at a warn level.
func logFields(cmd contract.Command, attempt int, args ...any) []any {
	return append([]any{"request_id", cmd.ID, "method", cmd.Method, "username", cmd.Username, "attempt", attempt}, args...)
}

// accept checks that the method is the one of the subject the command
// arrived on first: sites grant publish rights per method subject, so a
// body naming another method would get around them. Then the site's
// allowed methods, then the worker's own.
func (w *Worker) accept(subject string, m contract.Method) error {
	if subject != contract.RequestSubject(m) {
		return contract.Errorf(contract.CodeMethodMismatch, "the command names method %q but was published on %s; a %s command goes on %s", m, subject, m, contract.RequestSubject(m))
	}
	if w.o.Allowed != nil {
		if err := w.o.Allowed.Check(m); err != nil {
			return err
		}
	}
	if !w.o.Methods.Allows(m) {
		return contract.Errorf(contract.CodeInvalidMethod, "the %s does not carry out %q", w.o.Source, m)
	}
	return nil
}

// permanent reports whether retrying cannot help: every error that carries
// a contract code is a verdict, except a dependency being unavailable or
// slow. Errors without a code are faults (I/O, NATS, a server that stopped)
// a later delivery may not meet.
func permanent(err error) bool {
	if bus.IsPermanent(err) {
		return true
	}
	e, ok := errors.AsType[*contract.Error](err)
	if !ok {
		return false
	}
	switch e.Code {
	case contract.CodeUnavailable, contract.CodeTimeout, contract.CodeJupyterUnavailable, contract.CodeJupyterTimeout, contract.CodeRucioUnavailable:
		return false
	}
	return true
}

// reject records a command refused before any work and ends it.
func (w *Worker) reject(ctx context.Context, cmd contract.Command, attempt int, cause error) error {
	if contract.ValidateID("id", cmd.ID) != nil {
		// Still recorded, under an id of its own.
		cmd.ID = uuid.NewString()
	}
	return w.refuse(ctx, w.event(ctx, cmd, contract.EventRejected, attempt), cause)
}

// refuse publishes ev, a rejected event, with the error of cause.
func (w *Worker) refuse(ctx context.Context, ev contract.Event, cause error) error {
	ev.Error = contract.AsError(cause)
	if err := bus.PublishEvent(ctx, w.o.JS, ev); err != nil {
		return fmt.Errorf("publish rejected event: %w", err)
	}
	w.metrics.ended(ev.Method, "rejected", ev.Error.Code)
	w.o.Log.InfoContext(ctx, "command_rejected", "request_id", ev.RequestID, "code", ev.Error.Code, "detail", ev.Error.Detail)
	return recordedError{bus.Permanent(cause)}
}

// fail records a failed request and ends it.
func (w *Worker) fail(ctx context.Context, cmd contract.Command, attempt int, cause error) error {
	ev := w.event(ctx, cmd, contract.EventFailed, attempt)
	ev.Error = failure(cause)
	if err := bus.PublishEvent(ctx, w.o.JS, ev); err != nil {
		return fmt.Errorf("publish failed event: %w (after %w)", err, cause)
	}
	w.metrics.ended(cmd.Method, "failed", ev.Error.Code)
	w.o.Log.InfoContext(ctx, "staging_failed", "request_id", cmd.ID, "method", cmd.Method, "code", ev.Error.Code, "detail", ev.Error.Detail)
	return recordedError{bus.Permanent(cause)}
}

// failure is the contract error reported for cause.
func failure(cause error) *contract.Error {
	if e, ok := errors.AsType[*contract.Error](cause); ok {
		return e
	}
	return contract.Errorf(contract.CodeRetriesExhausted, "gave up after the last allowed attempt: %v", cause)
}

// OnFailure is the acknowledgement policy's hook for a failure Handle did
// not record itself (a publish that failed on the last delivery, a panic's
// aftermath): it publishes the failed event, so every request ends in the
// audit.
func (w *Worker) OnFailure(ctx context.Context, msg jetstream.Msg, err error) error {
	if _, ok := errors.AsType[recordedError](err); ok {
		return nil
	}
	var cmd contract.Command
	if jerr := json.Unmarshal(msg.Data(), &cmd); jerr != nil || contract.ValidateID("id", cmd.ID) != nil {
		cmd = contract.Command{ID: uuid.NewString()}
	}
	rerr := w.fail(ctx, cmd, attemptOf(msg), err)
	if _, ok := errors.AsType[recordedError](rerr); ok {
		return nil
	}
	return rerr
}

func (w *Worker) event(ctx context.Context, cmd contract.Command, t contract.EventType, attempt int) contract.Event {
	ev := contract.EventFor(cmd, t)
	ev.ID = uuid.NewString()
	ev.Time = time.Now().UTC()
	ev.Source = w.o.Source
	ev.Attempt = attempt
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.TraceID = sc.TraceID().String()
	}
	return ev
}

// attemptOf is the delivery number of msg.
func attemptOf(msg jetstream.Msg) int {
	if meta, err := msg.Metadata(); err == nil {
		return int(meta.NumDelivered)
	}
	return 1
}
