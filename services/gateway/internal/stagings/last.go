package stagings

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
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

// NextEvent returns request id's first stored event after stream sequence
// after, with its sequence, by a direct get (no consumer); found is false
// when there is none (yet).
func (c *Client) NextEvent(ctx context.Context, id string, after uint64) (msg *jetstream.RawStreamMsg, found bool, err error) {
	if err := c.connected("read request events"); err != nil {
		return nil, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	stream, err := c.eventStream(ctx)
	if err != nil {
		return nil, false, unavailable("read request events", err)
	}
	msg, err = stream.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(contract.EventSubject(id)))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, unavailable("read request events", err)
	}
	return msg, true, nil
}
