package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
)

// Consume pulls messages from c and runs handle on each, at most concurrency
// at a time, until ctx is cancelled. Then it stops pulling and waits for the
// messages in hand to finish: their handlers run on a context that is not
// cancelled with ctx, so in-flight work is finished, not lost (a process
// killed meanwhile leaves them to be redelivered after AckWait).
//
// A message waiting here for a slot gets no InProgress, so it must never
// wait longer than a handler takes to return: c's MaxAckPending must not
// exceed concurrency. The server then never has more messages out than
// there are slots (buffered and running together), and one arrives only
// when a handler has acknowledged its own and is about to free its slot.
func Consume(ctx context.Context, c jetstream.Consumer, concurrency int, handle func(ctx context.Context, msg jetstream.Msg)) error {
	if concurrency <= 0 {
		concurrency = 1
	}
	it, err := c.Messages(jetstream.PullMaxMessages(concurrency))
	if err != nil {
		return fmt.Errorf("start pulling: %w", err)
	}
	go func() {
		<-ctx.Done()
		it.Stop()
	}()

	// One goroutine per slot for the whole run, not one per message: a
	// fresh goroutine's stack grew (and was copied) again for every
	// message's handler, a tenth of a worker's CPU per command.
	work := context.WithoutCancel(ctx)
	msgs := make(chan jetstream.Msg) // unbuffered: a message is taken only by a free slot
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for msg := range msgs {
				handle(work, msg)
			}
		})
	}
	defer wg.Wait()
	defer close(msgs)
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("pull: %w", err)
		}
		msgs <- msg
	}
}
