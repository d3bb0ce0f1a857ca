package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// Run declares the worker's durable consumer on the commands of its
// methods and handles them under the one acknowledgement policy until ctx
// is cancelled; then it stops taking new commands, finishes those in hand
// and returns nil. It fails when it cannot start.
func (w *Worker) Run(ctx context.Context) error {
	if w.o.Durable == "" {
		return errors.New("worker: Durable is required to run")
	}
	concurrency := max(w.o.Concurrency, 1)
	consumer, err := bus.EnsureConsumer(ctx, w.o.JS, bus.ConsumerOptions{
		Stream:         contract.StreamRequests,
		Durable:        w.o.Durable,
		FilterSubjects: contract.RequestSubjects(w.o.Methods...),
		AckWait:        w.o.AckWait,
		MaxDeliver:     w.o.MaxDeliver,
		// Site-wide: every process of the service shares the consumer, and
		// each takes no more than it has free slots (bus.Consume).
		MaxAckPending: w.o.MaxAckPending,
	})
	if err != nil {
		return stoppedWhileStarting(ctx, err)
	}
	stop, err := w.watchExhausted(ctx)
	if err != nil {
		return stoppedWhileStarting(ctx, err)
	}
	defer stop()
	stopListening, err := w.listenCancels(ctx)
	if err != nil {
		return stoppedWhileStarting(ctx, err)
	}
	defer stopListening()
	cancels, cancelPolicy, err := w.cancelConsumer(ctx)
	if err != nil {
		return stoppedWhileStarting(ctx, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		err := bus.Consume(ctx, cancels, 1, func(ctx context.Context, msg jetstream.Msg) {
			cancelPolicy.Handle(ctx, msg, w.cancelQueued)
		})
		if err != nil {
			// Commands go on; only queued requests wait for a worker
			// to find their cancel.
			w.o.Log.ErrorContext(ctx, "cancels_not_consumed", "error", err)
		}
	})
	policy := bus.AckPolicy{
		Log:        w.o.Log,
		AckWait:    w.o.AckWait,
		MaxDeliver: w.o.MaxDeliver,
		Timeout:    w.o.Timeout,
		OnFailure:  w.OnFailure,
	}
	err = bus.Consume(ctx, consumer, concurrency, func(ctx context.Context, msg jetstream.Msg) {
		policy.Handle(ctx, msg, w.Handle)
	})
	if err != nil {
		return fmt.Errorf("consume %s commands: %w", w.o.Durable, err)
	}
	return nil
}

// stoppedWhileStarting is nil when ctx was cancelled while the worker was
// still starting: asked to stop, it has not failed.
func stoppedWhileStarting(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
