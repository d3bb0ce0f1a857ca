package stagings

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/backoff"
	"github.com/skao/skao-staging/libs/contract"
)

// Watch registers a watch of request id's events with the client's shared
// subscription (made on the first call). Call it before Submit, so that no
// event published after Submit can be missed, and Close the watch when
// done. It is for one goroutine.
func (c *Client) Watch(id string) (*Watch, error) {
	if err := c.connected("watch request"); err != nil {
		return nil, err
	}
	if err := c.dispatch.subscribe(); err != nil {
		return nil, unavailable("watch request", err)
	}
	w := &Watch{c: c, id: id, events: make(chan *nats.Msg, watchBuffer)}
	c.dispatch.register(w)
	return w, nil
}

// Events delivers the request's events as NATS published them, from the
// Watch call on: a signal of what happened, without the stream sequence.
// An event may be missing (Dropped) or never have been stored (the stream
// refused a duplicate or a late queued event); read the stream for the
// record.
func (w *Watch) Events() <-chan *nats.Msg { return w.events }

// Dropped reports, and clears, whether an event was dropped because the
// watch's buffer was full since the last call.
func (w *Watch) Dropped() bool { return w.dropped.Swap(false) }

// Outcome waits for the request's terminal event (succeeded, failed or
// rejected) until ctx ends, and returns ctx's error then.
//
// It also reads the request's last event from the stream when the terminal
// event was not announced within the watch's first check interval (1 s by
// default), and again at growing intervals up to 8 s, and whenever events
// were dropped: a watch registered after the request ended (or a caller
// that watched late), or one whose announcement was lost, still gets the
// outcome. A request that ends within the interval, the usual case for a
// watch made before Submit, costs no read of the stream.
func (w *Watch) Outcome(ctx context.Context) (contract.Event, error) {
	if ev, ok := w.buffered(); ok {
		return ev, nil
	}
	checks := backoff.Exponential{Base: firstCheck, Max: lastCheck}
	if w.checkAfter > 0 {
		checks.Base = w.checkAfter
	}
	n := 1
	check := time.NewTimer(checks.Delay(n))
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return contract.Event{}, ctx.Err()
		case msg := <-w.events:
			if ev, ok := terminal(msg.Data); ok && w.fresh(ev) {
				return ev, nil
			}
			if w.Dropped() {
				if ev, ok, err := w.storedOutcome(ctx); err != nil || (ok && w.fresh(ev)) {
					return ev, err
				}
			}
		case <-check.C:
			if ev, ok, err := w.storedOutcome(ctx); err != nil || (ok && w.fresh(ev)) {
				return ev, err
			}
			n++
			check.Reset(checks.Delay(n))
		}
	}
}

// firstCheck and lastCheck bound the intervals at which Outcome reads a
// request's last event from the stream while its terminal event is not
// announced.
const (
	firstCheck = time.Second
	lastCheck  = 8 * time.Second
)

// buffered looks through what is buffered, without waiting, for the
// terminal event.
func (w *Watch) buffered() (contract.Event, bool) {
	for {
		select {
		case msg := <-w.events:
			if ev, ok := terminal(msg.Data); ok && w.fresh(ev) {
				return ev, true
			}
		default:
			return contract.Event{}, false
		}
	}
}

// fresh reports whether ev is not the outcome already returned, and
// remembers it as returned.
func (w *Watch) fresh(ev contract.Event) bool {
	if ev.ID != "" && ev.ID == w.returned {
		return false
	}
	w.returned = ev.ID
	return true
}

// storedOutcome is the request's last stored event when it is terminal.
// A request not in the stream yet is no error: its events are still to come.
func (w *Watch) storedOutcome(ctx context.Context) (contract.Event, bool, error) {
	getCtx, cancel := context.WithTimeout(ctx, w.c.timeout)
	defer cancel()
	ev, err := w.c.lastEvent(getCtx, w.id)
	switch {
	case ctx.Err() != nil:
		return contract.Event{}, false, ctx.Err()
	case err != nil:
		// Not in the stream yet, or the stream did not answer: the live
		// events may still bring the outcome, so keep waiting.
		return contract.Event{}, false, nil
	}
	return ev, ev.Type.Terminal(), nil
}

func terminal(data []byte) (contract.Event, bool) {
	var ev contract.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		// Someone else's malformed message on the subject says nothing
		// about this request.
		return contract.Event{}, false
	}
	return ev, ev.Type.Terminal()
}

// Close unregisters the watch; it can be called more than once.
func (w *Watch) Close() error {
	if w.closed.CompareAndSwap(false, true) {
		w.c.dispatch.unregister(w)
	}
	return nil
}
