package recorder

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/encoding/json"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// A worker publishes a request's started event, and waits for the stream
// to store it, before any resolved, progress or succeeded event of that
// delivery, so in the stream a real one always has a started event of its
// request before it. One without is made up: nothing else
// about it can be checked (an absolute source path is legitimate, and the
// audit does not know the roots), but a record claiming a staging that
// never started would be a lie.
//
// The check reads the stream, not the audit's database: whether the
// started event is already recorded depends on batches in flight, the
// order redeliveries come in, and on which audit replica took it, while
// the stream's order is fixed when the events are published. Rejected,
// failed and queued events need no started event: a command refused at
// once, or failing before its worker could publish anything, ends with
// one of them alone.

// recentStarted is how many requests with a started event the recorder
// remembers; a live site has far fewer running at once.
const recentStarted = 100_000

// startedLookups bounds the events of a request read before its progress
// or succeeded event: a started event comes right after queued, and the
// first of several deliveries counts.
const startedLookups = 8

// checkStarted reports a no_started_event error when ev, a resolved,
// progress or succeeded event, has no started event of its request before it in the
// stream, and remembers the requests of started events.
func (r *Recorder) checkStarted(ctx context.Context, ev contract.Event, msg jetstream.Msg) error {
	switch ev.Type {
	case contract.EventStarted:
		r.started.add(ev.RequestID)
		return nil
	case contract.EventResolved, contract.EventProgress, contract.EventSucceeded:
	default:
		return nil
	}
	if r.started.has(ev.RequestID) {
		return nil
	}
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("read the metadata of %s: %w", msg.Subject(), err)
	}
	found, err := r.startedBefore(ctx, ev.RequestID, meta.Sequence.Stream)
	if err != nil {
		return err
	}
	if !found {
		return contract.Errorf(contract.CodeNoStartedEvent, "%s event %s of request %s has no started event before it on %s",
			ev.Type, ev.ID, ev.RequestID, contract.EventSubject(ev.RequestID))
	}
	r.started.add(ev.RequestID)
	return nil
}

// startedBefore reports whether the stream holds a started event of
// request id before sequence seq.
func (r *Recorder) startedBefore(ctx context.Context, id string, seq uint64) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	subject := contract.EventSubject(id)
	next := uint64(1)
	for range startedLookups {
		msg, err := r.stream.GetMsg(ctx, next, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read the events of %s: %w", id, err)
		}
		if msg.Sequence >= seq {
			return false, nil
		}
		var ev struct {
			Type contract.EventType `json:"type"`
		}
		if json.Unmarshal(msg.Data, &ev) == nil && ev.Type == contract.EventStarted {
			return true, nil
		}
		next = msg.Sequence + 1
	}
	return false, nil
}

// recentSet remembers the last keys added, between n and 2n of them: when
// the current generation fills up it becomes the previous one, and the
// one before is forgotten.
type recentSet struct {
	n         int
	cur, prev map[string]struct{}
}

func newRecentSet(n int) recentSet {
	return recentSet{n: n, cur: make(map[string]struct{})}
}

func (s *recentSet) add(k string) {
	if len(s.cur) >= s.n {
		s.prev, s.cur = s.cur, make(map[string]struct{}, s.n)
	}
	s.cur[k] = struct{}{}
}

func (s *recentSet) has(k string) bool {
	if _, ok := s.cur[k]; ok {
		return true
	}
	_, ok := s.prev[k]
	return ok
}
