package telemetry

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/contract"
)

// DefaultLogBuffer is how many log lines a LogPublisher holds while NATS
// is slower than the logger (or not connected yet).
const DefaultLogBuffer = 1024

// LogPublisher is an io.Writer that publishes every log line it is given
// on NATS (contract.LogSubject(service)), so the gateway can show the
// recent logs of the whole system. It never blocks the logger: a line
// that finds the buffer full, or the connection down, is dropped and
// counted. Give it to the logger beside the real output:
//
//	pub := telemetry.NewLogPublisher("stager", 0)
//	log, closer, err := telemetry.NewLogger(io.MultiWriter(os.Stderr, pub), cfg)
//	... connect ...
//	pub.Attach(nc)
//	defer pub.Close()
//
// Lines written before Attach wait in the buffer, so start-up lines are
// published once the connection is there. slog's handlers write one record
// per Write call, which is what makes a Write one line.
type LogPublisher struct {
	subject string
	lines   chan []byte
	dropped atomic.Uint64

	mu       sync.Mutex
	attached bool
	closed   bool
	stop     chan struct{}
	done     chan struct{}
}

// NewLogPublisher returns a publisher for service's log lines holding at
// most buffer lines in memory (DefaultLogBuffer when buffer <= 0).
func NewLogPublisher(service string, buffer int) *LogPublisher {
	if buffer <= 0 {
		buffer = DefaultLogBuffer
	}
	return &LogPublisher{
		subject: contract.LogSubject(service),
		lines:   make(chan []byte, buffer),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

var _ io.Writer = (*LogPublisher)(nil)

// Write queues a copy of p for publishing, or drops it when the buffer is
// full. It always reports success: losing a published copy must never
// make the logger fail.
func (p *LogPublisher) Write(b []byte) (int, error) {
	line := make([]byte, len(b))
	copy(line, b)
	select {
	case p.lines <- line:
	default:
		p.dropped.Add(1)
	}
	return len(b), nil
}

// Dropped is how many lines were lost: buffer full or connection down.
func (p *LogPublisher) Dropped() uint64 { return p.dropped.Load() }

// Attach starts publishing on nc. Only the first call has an effect.
func (p *LogPublisher) Attach(nc *nats.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.attached || p.closed || nc == nil {
		return
	}
	p.attached = true
	go p.run(nc)
}

func (p *LogPublisher) run(nc *nats.Conn) {
	defer close(p.done)
	for {
		select {
		case <-p.stop:
			return
		case line := <-p.lines:
			p.publish(nc, line)
		}
	}
}

func (p *LogPublisher) publish(nc *nats.Conn, line []byte) {
	// While reconnecting nats.go would keep the line in its own reconnect
	// buffer and may refuse it later; stale log lines are not worth it.
	if nc.Status() != nats.CONNECTED {
		p.dropped.Add(1)
		return
	}
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if err := nc.Publish(p.subject, line); err != nil {
		p.dropped.Add(1)
	}
}

// Close stops publishing; lines still buffered are dropped. Writes after
// Close are dropped too. It always returns nil (io.Closer).
func (p *LogPublisher) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	attached := p.attached
	close(p.stop)
	p.mu.Unlock()
	if attached {
		<-p.done
	}
	return nil
}

// JoinClosers returns a closer that closes each of cs in order and
// returns their errors joined.
func JoinClosers(cs ...io.Closer) io.Closer { return closers(cs) }

type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
