// Package worker turns staging commands taken from JetStream into work and
// events: it validates each command exactly as any other entry point would,
// reports started, progress and the outcome on the request's event subject,
// and tells the acknowledgement policy whether a failure is worth a retry.
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
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

// Source names the stager in the events it publishes.
const Source = "stager"

// LinkIssuer issues a download link for a source path (relative to the
// storage) to a user, and returns the link's URL path.
type LinkIssuer interface {
	Issue(ctx context.Context, username, path, requestID string) (string, error)
}

// Worker handles the stager's commands.
type Worker struct {
	JS      jetstream.JetStream
	Stager  *stage.Stager
	Links   LinkIssuer
	Allowed contract.MethodSet
	Log     *slog.Logger
	Tracer  trace.Tracer
	Metrics *Metrics
	// MaxDeliver is the consumer's: a transient failure on the last
	// delivery ends the request.
	MaxDeliver int
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
	ctx, span := w.Tracer.Start(ctx, "stager.handle", trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()

	cmd, err := contract.DecodeCommand(msg.Data())
	if err == nil {
		err = w.Allowed.Check(cmd.Method)
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return w.reject(ctx, cmd, attempt, err)
	}
	span.SetAttributes(attribute.String("staging.request_id", cmd.ID), attribute.String("staging.method", string(cmd.Method)), attribute.Int("staging.attempt", attempt))
	log := w.Log.With("request_id", cmd.ID, "method", cmd.Method, "attempt", attempt)

	start := w.event(ctx, cmd, contract.EventStarted, attempt)
	if err := bus.PublishEvent(ctx, w.JS, start); err != nil {
		return fmt.Errorf("publish started event: %w", err)
	}
	w.Metrics.inFlight.Inc()
	began := time.Now()
	res, err := w.stage(ctx, cmd, attempt)
	w.Metrics.inFlight.Dec()
	w.Metrics.duration.WithLabelValues(string(cmd.Method)).Observe(time.Since(began).Seconds())

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
	ev.Outcome, ev.Bytes, ev.Files, ev.Adler32, ev.Message, ev.DownloadURL = res.Outcome, res.Bytes, res.Files, res.Adler32, res.Message, res.DownloadURL
	if err := bus.PublishEvent(ctx, w.JS, ev); err != nil {
		// Redelivery is safe: the target is now present.
		return fmt.Errorf("publish succeeded event: %w", err)
	}
	w.Metrics.requests.WithLabelValues(string(cmd.Method), string(res.Outcome)).Inc()
	if res.Outcome == contract.OutcomeStaged {
		w.Metrics.bytes.Add(float64(res.Bytes))
		w.Metrics.files.Add(float64(res.Files))
	}
	log.InfoContext(ctx, "staging_succeeded", "outcome", res.Outcome, "bytes", res.Bytes, "files", res.Files)
	return nil
}

// result is a stage.Result plus what only the worker knows.
type result struct {
	stage.Result
	DownloadURL string
}

func (w *Worker) stage(ctx context.Context, cmd contract.Command, attempt int) (result, error) {
	switch cmd.Method {
	case contract.MethodLocalCopy:
		r, err := w.Stager.Copy(ctx, cmd, w.progress(ctx, cmd, attempt))
		return result{Result: r}, err
	case contract.MethodLocalSymlink:
		r, err := w.Stager.Symlink(ctx, cmd)
		return result{Result: r}, err
	case contract.MethodLocalHardlink:
		r, err := w.Stager.Hardlink(ctx, cmd)
		return result{Result: r}, err
	case contract.MethodDirectDownload:
		rel, fi, err := w.Stager.Check(ctx, cmd)
		if err != nil {
			return result{}, err
		}
		url, err := w.Links.Issue(ctx, cmd.Username, rel, cmd.ID)
		if err != nil {
			return result{}, fmt.Errorf("issue download link: %w", err)
		}
		what := "file"
		if fi.IsDir() {
			what = "directory (as a tar archive)"
		}
		return result{Result: stage.Result{Outcome: contract.OutcomeLinkIssued, Message: fmt.Sprintf("download link issued for %s %s", what, cmd.LocalPathOnStorage)}, DownloadURL: url}, nil
	}
	return result{}, contract.Errorf(contract.CodeInvalidMethod, "the stager does not carry out %q", cmd.Method)
}

// progress publishes progress events; the stager calls it at most about
// once a second.
func (w *Worker) progress(ctx context.Context, cmd contract.Command, attempt int) stage.ProgressFunc {
	return func(p contract.Progress) {
		ev := w.event(ctx, cmd, contract.EventProgress, attempt)
		ev.Progress = &p
		if err := bus.PublishEvent(ctx, w.JS, ev); err != nil {
			// Progress is informative only; the outcome is what counts.
			w.Log.WarnContext(ctx, "progress_publish_failed", "request_id", cmd.ID, "error", err)
		}
	}
}

// permanent reports whether retrying cannot help: every error that carries
// a contract code is a verdict, except a dependency being unavailable.
// Errors without a code are faults (I/O, NATS) a later delivery may not meet.
func permanent(err error) bool {
	if bus.IsPermanent(err) {
		return true
	}
	e, ok := errors.AsType[*contract.Error](err)
	return ok && e.Code != contract.CodeUnavailable && e.Code != contract.CodeTimeout
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
	w.Metrics.requests.WithLabelValues(metricMethod(cmd.Method), "rejected").Inc()
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
	w.Metrics.requests.WithLabelValues(string(cmd.Method), "failed").Inc()
	w.Log.InfoContext(ctx, "staging_failed", "request_id", cmd.ID, "method", cmd.Method, "code", ev.Error.Code, "detail", ev.Error.Detail)
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

// metricMethod keeps the method label's values bounded: a malformed
// command may name anything.
func metricMethod(m contract.Method) string {
	if _, err := contract.ParseMethod(string(m)); err != nil {
		return "invalid"
	}
	return string(m)
}
