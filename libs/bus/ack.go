package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/backoff"
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying: the policy reports the failure
// and terminates the message instead of redelivering it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Handler processes one message. It returns nil when the work is done, an
// error marked Permanent when it can never succeed, and any other error when
// a later delivery may succeed.
type Handler func(ctx context.Context, msg jetstream.Msg) error

// AckPolicy is the one acknowledgement policy of every consumer:
//   - success: Ack;
//   - permanent error: OnFailure (which records the failure), then Term;
//   - transient error: NakWithDelay, growing with the delivery count; on the
//     last allowed delivery it is handled like a permanent error, so a
//     request that exhausts MaxDeliver still ends as failed;
//   - long work: InProgress on a ticker well inside AckWait;
//   - panic: Nak, so another delivery tries again.
type AckPolicy struct {
	Log *slog.Logger
	// AckWait and MaxDeliver must match the consumer's configuration.
	AckWait    time.Duration
	MaxDeliver int
	// Timeout bounds one handler call (default: 10 × AckWait). In-progress
	// reports keep the delivery alive meanwhile.
	Timeout time.Duration
	// BaseDelay and MaxDelay bound the redelivery back-off (defaults 1 s and
	// 1 min).
	BaseDelay, MaxDelay time.Duration
	// OnFailure records a final failure (for workers: publishes a failed
	// event). If it fails, the message is redelivered rather than lost.
	OnFailure func(ctx context.Context, msg jetstream.Msg, err error) error
}

// Handle runs h on msg under the policy. The trace context of the message's
// headers is in the handler's ctx.
func (p AckPolicy) Handle(ctx context.Context, msg jetstream.Msg, h Handler) {
	ctx = ExtractTrace(ctx, msg.Headers())
	meta, err := msg.Metadata()
	delivered := uint64(1)
	if err == nil {
		delivered = meta.NumDelivered
	}
	log := p.Log.With("subject", msg.Subject(), "delivery", delivered)

	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 10 * p.AckWait
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := p.keepAlive(hctx, msg)
	err = p.run(hctx, msg, h)
	stop()

	switch {
	case err == nil:
		p.settle(ctx, log, "ack", msg.Ack())
	case errors.Is(err, errPanic):
		log.ErrorContext(ctx, "handler_panic", "error", err)
		p.settle(ctx, log, "nak", msg.Nak())
	case IsPermanent(err) || (p.MaxDeliver > 0 && delivered >= uint64(p.MaxDeliver)):
		if ferr := p.fail(ctx, msg, err); ferr != nil {
			log.ErrorContext(ctx, "record_failure_failed", "error", ferr, "cause", err)
			p.settle(ctx, log, "nak", msg.NakWithDelay(p.delay(delivered)))
			return
		}
		log.InfoContext(ctx, "message_terminated", "error", err)
		p.settle(ctx, log, "term", msg.TermWithReason(err.Error()))
	default:
		d := p.delay(delivered)
		log.WarnContext(ctx, "message_retry", "error", err, "delay", d.String())
		p.settle(ctx, log, "nak", msg.NakWithDelay(d))
	}
}

var errPanic = errors.New("panic")

func (p AckPolicy) run(ctx context.Context, msg jetstream.Msg, h Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v\n%s", errPanic, r, debug.Stack())
		}
	}()
	return h(ctx, msg)
}

func (p AckPolicy) fail(ctx context.Context, msg jetstream.Msg, err error) error {
	if p.OnFailure == nil {
		return nil
	}
	return p.OnFailure(ctx, msg, err)
}

// keepAlive reports InProgress every third of AckWait until stopped.
func (p AckPolicy) keepAlive(ctx context.Context, msg jetstream.Msg) (stop func()) {
	if p.AckWait <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(p.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					p.Log.WarnContext(ctx, "in_progress_failed", "error", err)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// delay is the back-off before delivery n+1: BaseDelay doubled per delivery,
// capped at MaxDelay.
func (p AckPolicy) delay(delivered uint64) time.Duration {
	base, maxDelay := p.BaseDelay, p.MaxDelay
	if base <= 0 {
		base = time.Second
	}
	if maxDelay <= 0 {
		maxDelay = time.Minute
	}
	return backoff.Exponential{Base: base, Max: maxDelay}.Delay(int(min(delivered, 64)))
}

func (p AckPolicy) settle(ctx context.Context, log *slog.Logger, what string, err error) {
	if err != nil {
		log.WarnContext(ctx, "acknowledge_failed", "action", what, "error", err)
	}
}
