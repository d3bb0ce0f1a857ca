package backoff

import (
	"context"
	"time"
)

// Wait waits d, or less if ctx ends first, and then returns ctx.Err():
// the pause between two attempts of a retry loop.
func Wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	return ctx.Err()
}
