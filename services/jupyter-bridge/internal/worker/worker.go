// Package worker turns jupyter_copy commands taken from JetStream into
// uploads and events: it validates each command exactly as any other entry
// point would, reports started, progress and the outcome on the request's
// event subject, and tells the acknowledgement policy whether a failure is
// worth a retry.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/jupytercopy"
)

// Source names the bridge in the events it publishes.
const Source = "jupyter-bridge"

// Worker handles jupyter_copy commands.
type Worker struct {
	JS      jetstream.JetStream
	Hub     *hubclient.Client
	Copier  *jupytercopy.Copier
	Log     *slog.Logger
	Tracer  trace.Tracer
	Metrics *Metrics
	// MaxDeliver is the consumer's: a transient failure on the last
	// delivery ends the request.
	MaxDeliver int
	// ProgressEvery spaces the progress events of one upload (default 1 s).
	ProgressEvery time.Duration
}

// recordedError is a failure whose event has already been published, so
// OnFailure must not publish another.
type recordedError struct{ err error }

func (e recordedError) Error() string { return e.err.Error() }
func (e recordedError) Unwrap() error { return e.err }

// Handle runs one command. It is a bus.Handler.
func (w *Worker) Handle(ctx context.Context, msg jetstream.Msg) error {
	attempt := 1
	if meta, err := msg.Metadata(); err == nil {
		attempt = int(meta.NumDelivered)
	}
	ctx, span := w.Tracer.Start(ctx, "jupyter-bridge.handle", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()

	cmd, err := contract.DecodeCommand(msg.Data())
	if err == nil && cmd.Method != contract.MethodJupyterCopy {
		err = contract.Errorf(contract.CodeInvalidMethod, "the jupyter-bridge does not carry out %q", cmd.Method)
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return w.reject(ctx, cmd, attempt, err)
	}
	span.SetAttributes(attribute.String("staging.request_id", cmd.ID), attribute.String("staging.method", string(cmd.Method)), attribute.Int("staging.attempt", attempt))
	log := w.Log.With("request_id", cmd.ID, "username", cmd.Username, "attempt", attempt)

	if err := bus.PublishEvent(ctx, w.JS, w.event(ctx, cmd, contract.EventStarted, attempt)); err != nil {
		return fmt.Errorf("publish started event: %w", err)
	}
	w.Metrics.inFlight.Inc()
	began := time.Now()
	res, err := w.Copier.Copy(ctx, w.Hub, jupytercopy.Request{
		Username: cmd.Username,
		Source:   cmd.LocalPathOnStorage,
		Target:   cmd.RelativePath,
	}, w.progress(ctx, cmd, attempt))
	w.Metrics.inFlight.Dec()
	w.Metrics.duration.Observe(time.Since(began).Seconds())
	if res.ServerStarted {
		w.Metrics.serverStarts.Inc()
		if res.StartDuration > 0 {
			w.Metrics.startDuration.Observe(res.StartDuration.Seconds())
		}
	}

	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		if !permanent(err) && (w.MaxDeliver <= 0 || attempt < w.MaxDeliver) {
			log.WarnContext(ctx, "staging_retry", "error", err)
			return err
		}
		return w.fail(ctx, cmd, attempt, err)
	}
	ev := w.event(ctx, cmd, contract.EventSucceeded, attempt)
	ev.Outcome, ev.Bytes, ev.Files = res.Outcome, res.Bytes, res.Files
	if res.Outcome == contract.OutcomeAlreadyPresent {
		ev.Message = fmt.Sprintf("%s is already present in the Jupyter server of %s; nothing uploaded", cmd.RelativePath, cmd.Username)
	} else {
		ev.Message = fmt.Sprintf("uploaded %d files (%d bytes) to %s in the Jupyter server of %s", res.Files, res.Bytes, cmd.RelativePath, cmd.Username)
	}
	if err := bus.PublishEvent(ctx, w.JS, ev); err != nil {
		// Redelivery is safe: the target is now present.
		return fmt.Errorf("publish succeeded event: %w", err)
	}
	w.Metrics.requests.WithLabelValues(string(res.Outcome)).Inc()
	if res.Outcome == contract.OutcomeStaged {
		w.Metrics.bytes.Add(float64(res.Bytes))
		w.Metrics.files.Add(float64(res.Files))
	}
	log.InfoContext(ctx, "staging_succeeded", "outcome", res.Outcome, "bytes", res.Bytes, "files", res.Files, "server_started", res.ServerStarted)
	return nil
}

// progress publishes progress events: every server start message, and
// upload progress at most once per ProgressEvery.
func (w *Worker) progress(ctx context.Context, cmd contract.Command, attempt int) func(jupytercopy.Update) {
	every := w.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	var mu sync.Mutex
	var last time.Time
	return func(u jupytercopy.Update) {
		mu.Lock()
		defer mu.Unlock()
		ev := w.event(ctx, cmd, contract.EventProgress, attempt)
		if u.Message != "" {
			ev.Message = u.Message
		} else {
			done := u.Progress.BytesDone == u.Progress.BytesTotal && u.Progress.FilesDone == u.Progress.FilesTotal
			if time.Since(last) < every && !done {
				return
			}
			last = time.Now()
			p := u.Progress
			ev.Progress = &p
		}
		if err := bus.PublishEvent(ctx, w.JS, ev); err != nil {
			// Progress is informative only; the outcome is what counts.
			w.Log.WarnContext(ctx, "progress_publish_failed", "request_id", cmd.ID, "error", err)
		}
	}
}

// permanent reports whether retrying cannot help: every error that carries
// a contract code is a verdict, except a dependency being unavailable or
// slow. Errors without a code (the server stopped, I/O) may not recur.
func permanent(err error) bool {
	if bus.IsPermanent(err) {
		return true
	}
	e, ok := errors.AsType[*contract.Error](err)
	if !ok {
		return false
	}
	switch e.Code {
	case contract.CodeUnavailable, contract.CodeTimeout, hubclient.CodeUnavailable, hubclient.CodeTimeout:
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
	ev := w.event(ctx, cmd, contract.EventRejected, attempt)
	ev.Error = contract.AsError(cause)
	if err := bus.PublishEvent(ctx, w.JS, ev); err != nil {
		return fmt.Errorf("publish rejected event: %w", err)
	}
	w.Metrics.requests.WithLabelValues("rejected").Inc()
	w.Log.InfoContext(ctx, "command_rejected", "request_id", cmd.ID, "code", ev.Error.Code, "detail", ev.Error.Detail)
	return recordedError{bus.Permanent(cause)}
}

// fail records a failed request and ends it.
func (w *Worker) fail(ctx context.Context, cmd contract.Command, attempt int, cause error) error {
	ev := w.event(ctx, cmd, contract.EventFailed, attempt)
	ev.Error = failure(cause)
	if err := bus.PublishEvent(ctx, w.JS, ev); err != nil {
		return fmt.Errorf("publish failed event: %w (after %w)", err, cause)
	}
	w.Metrics.requests.WithLabelValues("failed").Inc()
	w.Log.InfoContext(ctx, "staging_failed", "request_id", cmd.ID, "code", ev.Error.Code, "detail", ev.Error.Detail)
	return recordedError{bus.Permanent(cause)}
}

// failure is the contract error reported for cause.
func failure(cause error) *contract.Error {
	if e, ok := errors.AsType[*contract.Error](cause); ok {
		return e
	}
	return contract.Errorf(contract.CodeRetriesExhausted, "gave up after the last allowed attempt: %v", cause)
}

// OnFailure is the acknowledgement policy's hook for a failure the handler
// did not record itself (a publish that failed on the last delivery, a
// panic's aftermath): it publishes the failed event, so every request ends
// in the audit.
func (w *Worker) OnFailure(ctx context.Context, msg jetstream.Msg, err error) error {
	if _, ok := errors.AsType[recordedError](err); ok {
		return nil
	}
	var cmd contract.Command
	if jerr := json.Unmarshal(msg.Data(), &cmd); jerr != nil || contract.ValidateID("id", cmd.ID) != nil {
		cmd = contract.Command{ID: uuid.NewString()}
	}
	attempt := 1
	if meta, merr := msg.Metadata(); merr == nil {
		attempt = int(meta.NumDelivered)
	}
	rerr := w.fail(ctx, cmd, attempt, err)
	if _, ok := errors.AsType[recordedError](rerr); ok {
		return nil
	}
	return rerr
}

func (w *Worker) event(ctx context.Context, cmd contract.Command, t contract.EventType, attempt int) contract.Event {
	ev := contract.EventFor(cmd, t)
	ev.ID = uuid.NewString()
	ev.Time = time.Now().UTC()
	ev.Source = Source
	ev.Attempt = attempt
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.TraceID = sc.TraceID().String()
	}
	return ev
}
