package stagings

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/contract"
)

// watchBuffer is how many events one watch holds unread. A request
// publishes a handful of events; the rest of the bound absorbs progress
// bursts. When it is full the dispatcher drops the event and marks the
// watch, which then reads the event stream instead.
const watchBuffer = 64

// errClosed is the closed client's answer to a new watch.
var errClosed = errors.New("the client is closed")

// dispatcher is the client's one core NATS subscription to every request's
// events, handing each event to the watches registered for its request id.
// A subscription per waiting request cost a SUB and an UNSUB round of
// interest propagation on the server each; this costs a map look-up.
//
// It never blocks: its callback runs on the subscription's one goroutine
// and only sends to buffered channels, dropping (and marking) rather than
// waiting, so a slow watch cannot stall the others or make the shared
// subscription a slow consumer.
type dispatcher struct {
	nc *nats.Conn

	// start guards sub: the subscription is made on the first Watch (a
	// Client is also built without a connection, in tests) and again after
	// a failed attempt.
	start  sync.Mutex
	sub    *nats.Subscription
	closed bool

	mu      sync.RWMutex
	watches map[string][]*Watch
}

func newDispatcher(nc *nats.Conn) *dispatcher {
	return &dispatcher{nc: nc, watches: make(map[string][]*Watch)}
}

// subscribe makes the shared subscription once, and returns when the server
// has it, so an event published after a Watch returns reaches the watch.
func (d *dispatcher) subscribe() error {
	d.start.Lock()
	defer d.start.Unlock()
	if d.closed {
		return fmt.Errorf("subscribe %s: %w", contract.SubjectEventsAll, errClosed)
	}
	if d.sub != nil {
		return nil
	}
	sub, err := d.nc.Subscribe(contract.SubjectEventsAll, d.deliver)
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", contract.SubjectEventsAll, err)
	}
	if err := d.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe %s: %w", contract.SubjectEventsAll, err)
	}
	d.sub = sub
	return nil
}

// close ends the shared subscription and refuses to make it again; the
// watches still registered get no more events and find their outcome in
// the event stream.
func (d *dispatcher) close() error {
	d.start.Lock()
	defer d.start.Unlock()
	d.closed = true
	if d.sub == nil {
		return nil
	}
	sub := d.sub
	d.sub = nil
	if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		return fmt.Errorf("unsubscribe %s: %w", contract.SubjectEventsAll, err)
	}
	return nil
}

// deliver hands msg to the watches of its request.
func (d *dispatcher) deliver(msg *nats.Msg) {
	id, ok := strings.CutPrefix(msg.Subject, contract.EventSubject(""))
	if !ok {
		return
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	for _, w := range d.watches[id] {
		select {
		case w.events <- msg:
		default:
			w.dropped.Store(true)
		}
	}
}

// register makes w receive the events of w.id from now on.
func (d *dispatcher) register(w *Watch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.watches[w.id] = append(d.watches[w.id], w)
}

// unregister stops delivering to w; once it returns nothing more is sent.
func (d *dispatcher) unregister(w *Watch) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ws := d.watches[w.id]
	for i, x := range ws {
		if x == w {
			ws[i] = ws[len(ws)-1]
			ws[len(ws)-1] = nil
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) == 0 {
		delete(d.watches, w.id)
		return
	}
	d.watches[w.id] = ws
}

// registered is how many watches are registered (for tests).
func (d *dispatcher) registered() int {
	d.mu.RLock()
	defer d.mu.RUnlock()
	n := 0
	for _, ws := range d.watches {
		n += len(ws)
	}
	return n
}

// Watch follows the events of one request through the client's shared
// subscription.
type Watch struct {
	c      *Client
	id     string
	events chan *nats.Msg
	// dropped is set when the dispatcher found events full.
	dropped atomic.Bool
	// checkAfter is when Outcome first reads the request's last event
	// from the stream, unless the terminal event was announced before.
	checkAfter time.Duration
	// returned is the id of the terminal event Outcome returned: the same
	// event may also arrive live after it was read from the stream, and is
	// not an outcome twice.
	returned string
	closed   atomic.Bool
}
