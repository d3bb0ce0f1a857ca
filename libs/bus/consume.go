package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Pull requests wait this long for messages, and the server proves it still
// holds one with a heartbeat this often: a request lost with a cluster node
// (or its consumer leader) is noticed after two missed heartbeats, and
// pulled again from the node the client reconnected to.
const (
	pullWait      = 10 * time.Second
	pullHeartbeat = 2 * time.Second
	// pullPause spaces pulls that failed (no server, a leader election).
	pullPause = 250 * time.Millisecond
)

// Consume pulls messages from c and runs handle on each, at most concurrency
// at a time, until ctx is cancelled. Then it stops pulling and waits for the
// messages in hand to finish: their handlers run on a context that is not
// cancelled with ctx, so in-flight work is finished, not lost (a process
// killed meanwhile leaves them to be redelivered after AckWait).
//
// It asks the server only for as many messages as it has free slots, so a
// message it is handed starts at once. One that waited here for a slot
// would get no InProgress, time out unseen and be redelivered while the
// first copy still waited, and both copies would then run at once. This
// bounds each process by its own concurrency, whatever the consumer's
// MaxAckPending, so processes sharing the consumer add up: the consumer's
// MaxAckPending is a site-wide limit on all of them together.
func Consume(ctx context.Context, c jetstream.Consumer, concurrency int, handle func(ctx context.Context, msg jetstream.Msg)) error {
	if concurrency <= 0 {
		concurrency = 1
	}
	// One goroutine per slot for the whole run, not one per message: a
	// fresh goroutine's stack grew (and was copied) again for every
	// message's handler, a tenth of a worker's CPU per command.
	work := context.WithoutCancel(ctx)
	msgs := make(chan jetstream.Msg, concurrency)
	free := make(chan struct{}, concurrency) // one token per idle slot
	var wg sync.WaitGroup
	for range concurrency {
		free <- struct{}{}
		wg.Go(func() {
			for msg := range msgs {
				handle(work, msg)
				free <- struct{}{}
			}
		})
	}
	defer wg.Wait()
	defer close(msgs)
	for {
		// Wait for one free slot, then take every other one free now.
		select {
		case <-free:
		case <-ctx.Done():
			return nil
		}
		n := 1
	more:
		for n < concurrency {
			select {
			case <-free:
				n++
			default:
				break more
			}
		}
		got, err := pull(ctx, c, n, msgs)
		for range n - got {
			free <- struct{}{}
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, jetstream.ErrConsumerDeleted), errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, nats.ErrConnectionClosed):
			return fmt.Errorf("pull: %w", err)
		case err != nil:
			// A lost server, a leader election, a missed heartbeat: the
			// connection reconnects by itself; pull again shortly.
			select {
			case <-time.After(pullPause):
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// pull asks c for up to n messages and passes each to out as it arrives
// (out has room for them: each has a free slot). It returns how many came.
// Cancelling ctx abandons the request; a message the server sends after
// that is redelivered after AckWait.
func pull(ctx context.Context, c jetstream.Consumer, n int, out chan<- jetstream.Msg) (int, error) {
	fctx, cancel := context.WithTimeout(ctx, pullWait)
	defer cancel()
	batch, err := c.Fetch(n, jetstream.FetchContext(fctx), jetstream.FetchHeartbeat(pullHeartbeat))
	if err != nil {
		return 0, err
	}
	got := 0
	for msg := range batch.Messages() {
		out <- msg
		got++
	}
	err = batch.Error()
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = nil // the request expired with fewer than n messages
	}
	return got, err
}
