package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// start decides whether a delivery of cmd goes ahead, and records it: it
// reads the request's last event and its cancel request, then publishes
// started, or cancelled, on condition that nothing was published on the
// request's subject since the read. When something was (the gateway's
// queued event, published after the command; another copy starting; a
// cancel), it reads again. It returns false when the delivery ends here:
// with a nil error when its outcome is recorded or was another's to
// record.
//
// The last event is read on every delivery, even a fresh command's first:
// the request may have been cancelled while it was queued, and the
// condition makes a start and a cancel at the same moment exclusive.
func (w *Worker) start(ctx context.Context, msg jetstream.Msg, cmd contract.Command, attempt int, invalid error) (bool, error) {
	for again := false; ; again = true {
		// Before anything is recorded under the command's id, even its
		// rejection: the id may already be another request's.
		var seq uint64
		if contract.ValidateID("id", cmd.ID) == nil {
			last, s, err := w.lastEvent(ctx, cmd.ID)
			if err != nil {
				return false, err
			}
			seq = s
			switch {
			case last == nil:
			case !contract.SameRequest(cmd, *last):
				return false, w.conflict(ctx, msg, cmd, attempt)
			case last.Type.Terminal():
				w.o.Log.InfoContext(ctx, "command_already_ended", logFields(cmd, attempt, "last_event", last.Type)...)
				return false, nil
			case last.Type != contract.EventQueued && (attempt == 1 || again):
				// A worker took another copy of the request: a first
				// delivery cannot be the one it took, nor can one that
				// found the request changed since its read. If that
				// worker dies, its copy is redelivered and worked on
				// again.
				w.o.Log.InfoContext(ctx, "command_already_running", logFields(cmd, attempt, "last_event", last.Type)...)
				return false, nil
			}
		}
		if invalid != nil {
			return false, w.reject(ctx, cmd, attempt, invalid)
		}
		unchanged := jetstream.WithExpectLastSequencePerSubject(seq)
		c, err := w.lastCancel(ctx, cmd.ID)
		if err != nil {
			return false, err
		}
		if c != nil {
			// Cancelled while queued, or while an earlier delivery ran.
			err = w.publishCancelled(ctx, w.event(ctx, cmd, contract.EventCancelled, attempt), *c, attempt, unchanged)
		} else {
			err = bus.PublishEvent(ctx, w.o.JS, w.event(ctx, cmd, contract.EventStarted, attempt), unchanged)
		}
		switch {
		case bus.IsWrongLastSequence(err):
			continue
		case err != nil:
			return false, fmt.Errorf("publish the first event of a delivery: %w", err)
		}
		return c == nil, nil
	}
}

// lastEvent is the last event of request id and its stream sequence, nil
// and 0 when it has none. The last event is the request's state, so a
// command whose request has ended (a redelivery after a lost
// acknowledgement, or the same command published again after the
// deduplication window) must not be worked on again: a new started event
// would move the state backwards. Every event repeats the request's
// fields, so the last one also tells whether a command with this id asks
// for that request or another (see SameRequest).
func (w *Worker) lastEvent(ctx context.Context, id string) (*contract.Event, uint64, error) {
	// Bounded like a publish: the handler's own deadline allows hours.
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	stream, err := w.stream(ctx, contract.StreamEvents)
	if err != nil {
		return nil, 0, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, contract.EventSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the last event of %s: %w", id, err)
	}
	var ev contract.Event
	if err := json.Unmarshal(raw.Data, &ev); err != nil {
		return nil, 0, fmt.Errorf("decode the last event of %s: %w", id, err)
	}
	return &ev, raw.Sequence, nil
}

func (w *Worker) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	return w.streams.Stream(ctx, w.o.JS, name)
}

// conflict records a command that reuses the id of another request and
// ends it. It is recorded under a fresh id, naming the one it collided
// with: under the command's own id its events would mix with the other
// request's, and would become that request's state.
func (w *Worker) conflict(ctx context.Context, msg jetstream.Msg, cmd contract.Command, attempt int) error {
	collided := cmd.ID
	cmd.ID = conflictID(msg, collided)
	ev := w.event(ctx, cmd, contract.EventRejected, attempt)
	ev.ConflictsWith = collided
	return w.refuse(ctx, ev, contract.Errorf(contract.CodeIDConflict,
		"the id %q already names another request, with other fields; this command was not carried out (recorded under a fresh id)", collided))
}

// conflictID is the fresh id the conflict of msg with request collided is
// recorded under. It is the same on every delivery of msg, so a redelivery
// (a lost acknowledgement) records the conflict again under the same id,
// not as one more request.
func conflictID(msg jetstream.Msg, collided string) string {
	meta, err := msg.Metadata()
	if err != nil {
		return uuid.NewString()
	}
	name := fmt.Sprintf("%s/%d/%d/%s", meta.Stream, meta.Sequence.Stream, meta.Timestamp.UnixNano(), collided)
	return uuid.NewSHA1(uuid.NameSpaceURL, []byte(name)).String()
}
