// Package stagings is the gateway's side of the NATS contract: it submits
// commands with their queued or rejected events, reads a request's current
// state from the event stream (falling back to the audit for older ones),
// queries the audit's history and waits for a request's outcome.
package stagings

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// Origin is the origin and event source the gateway puts on what it publishes.
const Origin = "gateway"

// Client talks to NATS for the gateway. It holds no request state.
type Client struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	allowed contract.MethodSet
	// timeout bounds one publish or audit query, so an unreachable broker
	// answers the caller instead of hanging its request.
	timeout time.Duration
	now     func() time.Time

	streams bus.Streams

	// dispatch is the shared subscription the watches register with: share
	// one Client per process.
	dispatch *dispatcher

	workers *workers
}

// New returns a client publishing on js and querying over nc; timeout
// bounds each publish and query.
func New(nc *nats.Conn, js jetstream.JetStream, allowed contract.MethodSet, timeout time.Duration) *Client {
	return &Client{
		nc: nc, js: js, allowed: allowed, timeout: timeout,
		now:      func() time.Time { return time.Now().UTC() },
		dispatch: newDispatcher(nc),
		workers:  &workers{js: js},
	}
}

// Close ends the client's shared event subscription; a Watch made after
// it fails. Close it once nothing more is served with it.
func (c *Client) Close() error { return c.dispatch.close() }

// Allowed returns the methods allowed at this site.
func (c *Client) Allowed() contract.MethodSet { return c.allowed }

// Item is what a caller asks to stage.
type Item struct {
	Method             string
	Username           string
	LocalPathOnStorage string
	DID                string // instead of LocalPathOnStorage: a Rucio DID
	RelativePath       string
	ExpectedAdler32    string
	Lifetime           int64 // seconds
	JobID              string
}

// NewCommand gives item a fresh request id and returns it as a command.
func (c *Client) NewCommand(item Item) contract.Command {
	return contract.Command{
		SpecVersion:        contract.SpecVersion,
		ID:                 uuid.NewString(),
		JobID:              item.JobID,
		Method:             contract.Method(item.Method),
		Username:           item.Username,
		LocalPathOnStorage: item.LocalPathOnStorage,
		DID:                item.DID,
		RelativePath:       item.RelativePath,
		ExpectedAdler32:    item.ExpectedAdler32,
		Lifetime:           item.Lifetime,
		Origin:             Origin,
		RequestedAt:        c.now(),
	}
}

// Validate checks cmd as every entry point must, plus the site's allowed
// methods, and that a worker at the site takes the method's commands: one
// nobody takes is refused as not allowed rather than queued for good. When
// the workers cannot be looked up, that check is left to the publish,
// which meets the same broker.
func (c *Client) Validate(ctx context.Context, cmd contract.Command) error {
	if err := cmd.Validate(); err != nil {
		return err
	}
	if err := c.allowed.Check(cmd.Method); err != nil {
		return err
	}
	if c.connected("look up the workers") != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if ok, err := c.workers.serves(ctx, cmd.Method); err == nil && !ok {
		return contract.Errorf(contract.CodeMethodNotAllowed, "method %q is not carried out at this site: no worker takes its commands (%s)", cmd.Method, contract.RequestSubject(cmd.Method))
	}
	return nil
}

// ErrUnavailable is returned when NATS cannot take or answer a message.
var ErrUnavailable = errors.New("nats unavailable")

// unavailable wraps err as the contract's unavailable error, keeping
// ErrUnavailable in the chain for callers that test for it.
func unavailable(what string, err error) error {
	return fmt.Errorf("%w: %w: %w", contract.Errorf(contract.CodeUnavailable, "%s: the message broker is unreachable; try again later", what), ErrUnavailable, err)
}

// connected fails fast while the connection is down: nats.go would buffer
// the message for the reconnect and the caller would wait out the timeout
// for an answer that is already known.
func (c *Client) connected(what string) error {
	if s := c.nc.Status(); s != nats.CONNECTED {
		return unavailable(what, fmt.Errorf("connection %s", s))
	}
	return nil
}

// Submit publishes cmd, then its queued event. cmd must have passed
// Validate. A full command queue refuses cmd with queue_full.
//
// The command goes first so that no queued record ever exists for a
// command that was never published: if the command cannot be published
// nothing is, and the caller answers 503. The queued event is published only
// while the request's event subject is still empty, so it can never land
// after a worker's started or succeeded and hide the real state; when a
// worker was faster, the queued event is simply skipped (every worker event
// repeats the request fields, so the audit loses nothing).
func (c *Client) Submit(ctx context.Context, cmd contract.Command) error {
	if err := c.connected("submit"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := bus.PublishCommand(ctx, c.js, cmd); err != nil {
		if bus.IsStreamFull(err) {
			return fmt.Errorf("%w: %w", contract.Errorf(contract.CodeQueueFull, "the command queue (%s) is full; nothing was queued, try again later", contract.StreamRequests), err)
		}
		return unavailable("submit", err)
	}
	ev := c.event(ctx, cmd, contract.EventQueued)
	ev.Message = "accepted and queued"
	err := bus.PublishEvent(ctx, c.js, ev, jetstream.WithExpectLastSequencePerSubject(0))
	if err != nil && !bus.IsWrongLastSequence(err) {
		// The command is in the queue and its worker's events will record
		// it, so the submission stands; only the queued record is missing.
		return fmt.Errorf("%w: %w", ErrQueuedNotRecorded, err)
	}
	return nil
}

// ErrQueuedNotRecorded reports that a command was published but its queued
// event was not: the request is submitted.
var ErrQueuedNotRecorded = errors.New("command published, queued event not recorded")

// Reject publishes a rejected event for cmd, which failed validation with
// cause, so the audit records the refused request.
func (c *Client) Reject(ctx context.Context, cmd contract.Command, cause error) error {
	if err := c.connected("record rejection"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ev := c.event(ctx, cmd, contract.EventRejected)
	ev.Error = contract.AsError(cause)
	if err := bus.PublishEvent(ctx, c.js, ev); err != nil {
		return unavailable("record rejection", err)
	}
	return nil
}

func (c *Client) event(ctx context.Context, cmd contract.Command, t contract.EventType) contract.Event {
	ev := contract.EventFor(cmd, t)
	ev.ID = uuid.NewString()
	ev.Time = c.now()
	ev.Source = Origin
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.TraceID = sc.TraceID().String()
	}
	return ev
}
