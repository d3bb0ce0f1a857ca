package stagings

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/contract"
)

// Watch follows the events of one request from before it is submitted, so
// that no event published after Submit can be missed.
type Watch struct {
	sub    *nats.Subscription
	events chan *nats.Msg
}

// Watch subscribes to the events of request id. Call it before Submit and
// Close the watch when done.
func (c *Client) Watch(id string) (*Watch, error) {
	if err := c.connected("watch request"); err != nil {
		return nil, err
	}
	// A request publishes a handful of events; the buffer absorbs progress
	// bursts so a slow reader does not make the subscription a slow consumer.
	events := make(chan *nats.Msg, 64)
	sub, err := c.nc.ChanSubscribe(contract.EventSubject(id), events)
	if err != nil {
		return nil, unavailable("watch request", err)
	}
	return &Watch{sub: sub, events: events}, nil
}

// Outcome waits for the request's terminal event (succeeded, failed or
// rejected) until ctx ends, and returns ctx's error then.
func (w *Watch) Outcome(ctx context.Context) (contract.Event, error) {
	for {
		select {
		case <-ctx.Done():
			return contract.Event{}, ctx.Err()
		case msg := <-w.events:
			var ev contract.Event
			if err := json.Unmarshal(msg.Data, &ev); err != nil {
				// Someone else's malformed message on the subject says
				// nothing about this request; keep waiting.
				continue
			}
			if ev.Type.Terminal() {
				return ev, nil
			}
		}
	}
}

// Close ends the subscription.
func (w *Watch) Close() error {
	if err := w.sub.Unsubscribe(); err != nil && err != nats.ErrConnectionClosed {
		return fmt.Errorf("unsubscribe: %w", err)
	}
	return nil
}
