package stagings

import (
	"context"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// Cancel asks for request id to be cancelled on behalf of by: it stores a
// cancel request, and the workers of the request's method carry it out
// (see docs/messages.md, "Cancel"). The request's events tell the outcome;
// Watch the request before calling Cancel to hear it.
func (c *Client) Cancel(ctx context.Context, id, by string) error {
	if err := c.connected("cancel request"); err != nil {
		return err
	}
	req := contract.CancelRequest{
		SpecVersion: contract.SpecVersion,
		ID:          uuid.NewString(),
		Time:        c.now(),
		RequestID:   id,
		CancelledBy: by,
		Origin:      Origin,
	}
	if err := bus.PublishCancel(ctx, c.js, req); err != nil {
		return unavailable("cancel request", err)
	}
	return nil
}
