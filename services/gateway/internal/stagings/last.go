package stagings

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// LastState returns request id's state from its last event only, without
// asking the audit; found is false when the event stream holds no event of
// it (never published, or aged out).
func (c *Client) LastState(ctx context.Context, id string) (state State, found bool, err error) {
	if err := c.connected("read request state"); err != nil {
		return State{}, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ev, err := c.lastEvent(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return State{}, false, nil
	case err != nil:
		return State{}, false, unavailable("read request state", err)
	}
	return StateFromEvent(ev), true, nil
}
