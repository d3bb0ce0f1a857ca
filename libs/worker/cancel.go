package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// A cancel request (contract.CancelRequest on staging.cancel.<id>, kept in
// STAGING_CANCELS) reaches the workers two ways:
//
//   - every worker process listens on staging.cancel.> and cancels the
//     context of the delivery it runs for that request, if any: the
//     StageFunc stops, removes what it wrote, and Handle publishes
//     cancelled;
//   - the durable consumer <Durable>-cancel, shared by the service's
//     processes, ends a queued request at once: it publishes cancelled on
//     condition that the request's last event is still the one it read, as
//     Handle publishes started, so of the two exactly one wins.
//
// A delivery registers itself (running.add) before it reads the request's
// cancel request, so a cancel is either read there or heard on the
// subscription. A command delivered again after its request was cancelled
// finds the cancelled event, or the cancel request, and is not started.

// cancelCause is the cause of a delivery's context cancelled by c.
type cancelCause struct{ c contract.CancelRequest }

func (e cancelCause) Error() string { return "cancelled by " + e.c.CancelledBy }

// running maps the requests this process works on to the cancel of their
// delivery's context.
type running struct {
	mu sync.Mutex
	m  map[string]*delivery
}

type delivery struct{ stop context.CancelCauseFunc }

// add registers a delivery of request id; the returned function removes
// it (and no later delivery of the same request).
func (r *running) add(id string, stop context.CancelCauseFunc) (remove func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*delivery)
	}
	d := &delivery{stop}
	r.m[id] = d
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.m[id] == d {
			delete(r.m, id)
		}
	}
}

// cancel stops the delivery of request c.RequestID, if this process runs
// one.
func (r *running) cancel(c contract.CancelRequest) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	d, ok := r.m[c.RequestID]
	if ok {
		d.stop(cancelCause{c})
	}
	return ok
}

// cancelledBy is the cancel request that cancelled ctx, nil when none did.
func cancelledBy(ctx context.Context) *contract.CancelRequest {
	if c, ok := errors.AsType[cancelCause](context.Cause(ctx)); ok {
		return &c.c
	}
	return nil
}

// listenCancels subscribes to every cancel request and stops the delivery
// it names. The returned function unsubscribes.
func (w *Worker) listenCancels(ctx context.Context) (stop func(), err error) {
	sub, err := w.o.JS.Conn().Subscribe(contract.SubjectCancelAll, func(m *nats.Msg) {
		c, err := contract.DecodeCancelRequest(m.Subject, m.Data)
		if err != nil {
			w.o.Log.WarnContext(ctx, "cancel_invalid", "subject", m.Subject, "error", err)
			return
		}
		if w.runs.cancel(c) {
			w.o.Log.InfoContext(ctx, "staging_cancelling", "request_id", c.RequestID, "cancelled_by", c.CancelledBy)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", contract.SubjectCancelAll, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// lastCancel is the cancel request of request id, nil when there is none.
func (w *Worker) lastCancel(ctx context.Context, id string) (*contract.CancelRequest, error) {
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	stream, err := w.stream(ctx, contract.StreamCancels)
	if err != nil {
		return nil, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, contract.CancelSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the cancel request of %s: %w", id, err)
	}
	c, err := contract.DecodeCancelRequest(raw.Subject, raw.Data)
	if err != nil {
		// Not a cancel anyone may act on; the command goes ahead.
		w.o.Log.WarnContext(ctx, "cancel_invalid", "subject", raw.Subject, "error", err)
		return nil, nil
	}
	return &c, nil
}

// publishCancelled ends the request whose last event is last as cancelled
// by c. With opts holding an expected last sequence, it fails with a wrong
// last sequence error when another event came first.
func (w *Worker) publishCancelled(ctx context.Context, last contract.Event, c contract.CancelRequest, attempt int, opts ...jetstream.PublishOpt) error {
	ev := contract.Cancelled(last, c)
	ev.ID, ev.Time, ev.Source = uuid.NewString(), time.Now().UTC(), w.o.Source
	if attempt > 0 {
		ev.Attempt = attempt
	}
	if err := bus.PublishEvent(ctx, w.o.JS, ev, opts...); err != nil {
		return fmt.Errorf("publish cancelled event: %w", err)
	}
	w.metrics.requests.WithLabelValues(metricMethod(ev.Method), "cancelled").Inc()
	w.o.Log.InfoContext(ctx, "staging_cancelled", "request_id", ev.RequestID, "method", ev.Method, "cancelled_by", c.CancelledBy)
	return nil
}

// cancelQueued handles one message of the <Durable>-cancel consumer: a
// request of the worker's methods that is still queued is ended at once.
// Running requests are stopped by the process running them; ended ones are
// left as they are.
func (w *Worker) cancelQueued(ctx context.Context, msg jetstream.Msg) error {
	c, err := contract.DecodeCancelRequest(msg.Subject(), msg.Data())
	if err != nil {
		w.o.Log.WarnContext(ctx, "cancel_invalid", "subject", msg.Subject(), "error", err)
		return nil
	}
	for {
		last, seq, err := w.lastEvent(ctx, c.RequestID)
		if err != nil {
			return err
		}
		if last == nil || last.Type != contract.EventQueued || !w.o.Methods.Allows(last.Method) {
			return nil
		}
		err = w.publishCancelled(ctx, *last, c, 0, jetstream.WithExpectLastSequencePerSubject(seq))
		if !bus.IsWrongLastSequence(err) {
			return err
		}
		// A worker started it, or another cancel ended it: read again.
	}
}

// cancelConsumer declares the durable <Durable>-cancel on STAGING_CANCELS.
func (w *Worker) cancelConsumer(ctx context.Context) (jetstream.Consumer, bus.AckPolicy, error) {
	const ackWait = 30 * time.Second
	consumer, err := bus.EnsureConsumer(ctx, w.o.JS, bus.ConsumerOptions{
		Stream:  contract.StreamCancels,
		Durable: w.o.Durable + "-cancel",
		AckWait: ackWait,
	})
	return consumer, bus.AckPolicy{Log: w.o.Log, AckWait: ackWait}, err
}
