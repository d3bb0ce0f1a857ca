// Package logwindow keeps the most recent log lines of the whole system:
// every service publishes its JSON log records on staging.logs.<service>
// (telemetry.LogPublisher) and the gateway holds the last N of them in a
// ring, answered by GET /logs/. Nothing is stored anywhere else: the window
// starts empty when the gateway starts.
package logwindow

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/contract"
)

// MaxLineBytes is the longest line kept; longer records are cut, so one
// runaway record cannot make the window large.
const MaxLineBytes = 16 << 10

// Window is a bounded ring of log lines, oldest first. It is safe for
// concurrent use.
type Window struct {
	mu    sync.Mutex
	lines []string
	next  int // where the next line goes once the ring is full
	full  bool
}

// New returns a window holding at most size lines (at least 1).
func New(size int) *Window {
	return &Window{lines: make([]string, 0, max(size, 1))}
}

// Add appends line, pushing out the oldest one when the window is full.
func (w *Window) Add(line string) {
	if len(line) > MaxLineBytes {
		line = line[:MaxLineBytes]
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.full {
		w.lines = append(w.lines, line)
		w.full = len(w.lines) == cap(w.lines)
		return
	}
	w.lines[w.next] = line
	w.next = (w.next + 1) % len(w.lines)
}

// Last returns up to n of the newest lines, newest last; n <= 0 means all.
func (w *Window) Last(n int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ordered := make([]string, 0, len(w.lines))
	ordered = append(ordered, w.lines[w.next:]...)
	ordered = append(ordered, w.lines[:w.next]...)
	if n > 0 && n < len(ordered) {
		ordered = ordered[len(ordered)-n:]
	}
	return ordered
}

// Size is the most lines the window holds.
func (w *Window) Size() int { return cap(w.lines) }

// Subscribe feeds w with every log record published on NATS. The
// subscription ends with the connection's Drain or Close, or with
// Unsubscribe. The handler must never log: its own records would come back
// to it.
func Subscribe(nc *nats.Conn, w *Window) (*nats.Subscription, error) {
	sub, err := nc.Subscribe(contract.SubjectLogsAll, func(msg *nats.Msg) {
		w.Add(string(msg.Data))
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", contract.SubjectLogsAll, err)
	}
	// A burst of records must not make the gateway a slow consumer that
	// the server disconnects; drop beyond this instead.
	if err := sub.SetPendingLimits(4*cap(w.lines)+1024, 64<<20); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", contract.SubjectLogsAll, err)
	}
	return sub, nil
}
