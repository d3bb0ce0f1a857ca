package audit

// STAGING_REQUESTS keeps a command at most its max age: one that waits
// longer for a worker (none of its method runs, or they are stopped) is
// removed by the server, which says nothing. Its request would then stay
// queued for ever. The audit knows the requests still queued; now and
// then it records those older than the max age as failed (queue_expired).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

const (
	// source names the audit in the events it publishes.
	source = "audit"
	// sweepMargin is added to the max age before a queued request counts
	// as aged out: its created_at is the time of its queued event, which
	// the gateway publishes just after the command, on another clock.
	sweepMargin = time.Minute
	// sweepLimit bounds the requests one sweep looks at; the next sweep
	// goes on after the last of them.
	sweepLimit = 1000
)

// beforeExpire, when set (by tests), runs between the read of a request's
// last event and the publish of its failed event.
var beforeExpire func(id string)

type queueSweeper struct {
	js      jetstream.JetStream
	streams bus.Streams
	store   *auditstore.Store
	every   time.Duration
	log     *slog.Logger
	expired prometheus.Counter
	// next is where the next sweep starts: after the last request the
	// previous one looked at when it met the bound, else at the oldest.
	next auditstore.QueuedRequest
}

func newQueueSweeper(js jetstream.JetStream, store *auditstore.Store, every time.Duration, log *slog.Logger, reg prometheus.Registerer) *queueSweeper {
	return &queueSweeper{
		js: js, store: store, every: every, log: log,
		expired: promauto.With(reg).NewCounter(prometheus.CounterOpts{
			Name: "staging_audit_queue_expired_total",
			Help: "Requests the audit recorded as failed (queue_expired): their command waited in STAGING_REQUESTS longer than its max age, and no worker took it.",
		}),
	}
}

// run sweeps now and every s.every until ctx is cancelled.
func (s *queueSweeper) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		n, err := s.sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "queue_sweep_failed", "error", err, "expired", n)
		case n > 0:
			s.log.InfoContext(ctx, "queue_swept", "expired", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep records as failed the requests still queued that were created
// longer ago than the queue keeps commands, and returns how many.
func (s *queueSweeper) sweep(ctx context.Context) (int, error) {
	maxAge, err := s.maxAge(ctx)
	if err != nil || maxAge <= 0 {
		// No max age: the queue keeps every command until a worker takes it.
		return 0, err
	}
	reqs, err := s.store.Queued(ctx, time.Now().Add(-maxAge-sweepMargin), s.next, sweepLimit)
	if err != nil {
		return 0, err
	}
	s.next = auditstore.QueuedRequest{}
	if len(reqs) == sweepLimit {
		s.next = reqs[len(reqs)-1]
	}
	n := 0
	for _, r := range reqs {
		expired, err := s.expire(ctx, r.ID, maxAge)
		if err != nil {
			return n, err
		}
		if expired {
			n++
			s.expired.Inc()
		}
	}
	return n, nil
}

// maxAge is the max age of STAGING_REQUESTS as the stream itself has it:
// what the server goes by, whatever this process was configured with.
func (s *queueSweeper) maxAge(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	stream, err := s.streams.Stream(ctx, s.js, contract.StreamRequests)
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", contract.StreamRequests, err)
	}
	return info.Config.MaxAge, nil
}

// expire publishes the failed event of request id if its last event is
// still its queued event, and reports whether it did. The publish is
// conditional on that last event: a worker that starts the request (or a
// cancel) at the same moment wins, and the request is left alone. The
// audit records the failed event as it records any.
func (s *queueSweeper) expire(ctx context.Context, id string, maxAge time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, bus.PublishTimeout)
	defer cancel()
	queued, seq, err := s.lastEvent(ctx, id)
	if err != nil || queued == nil || queued.Type != contract.EventQueued {
		// Anything else came after it: the audit records that.
		return false, err
	}
	if beforeExpire != nil {
		beforeExpire(id)
	}
	ev := contract.EventAfter(*queued, contract.EventFailed)
	// The same id on every sweep and every audit instance.
	ev.ID = uuid.NewSHA1(uuid.NameSpaceURL, []byte("queue_expired/"+id)).String()
	ev.Time, ev.Source = time.Now().UTC(), source
	ev.Error = contract.Errorf(contract.CodeQueueExpired,
		"the command waited longer than the queue keeps commands (%s) with no worker taking it; submit it again", maxAge)
	err = bus.PublishEvent(ctx, s.js, ev, jetstream.WithExpectLastSequencePerSubject(seq))
	if bus.IsWrongLastSequence(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("publish the failed event of %s: %w", id, err)
	}
	s.log.InfoContext(ctx, "request_queue_expired", "request_id", id, "method", ev.Method, "username", ev.Username, "max_age", maxAge.String())
	return true, nil
}

// lastEvent is the last event of request id on STAGING_EVENTS and its
// sequence. When the stream no longer holds any (it keeps events less
// long than the queue keeps commands), it is the queued event the audit
// stored, and the sequence 0: the failed event is then published only
// while the subject stays empty. An undecodable event, or none at all, is
// nil: the request is left as it is.
func (s *queueSweeper) lastEvent(ctx context.Context, id string) (*contract.Event, uint64, error) {
	stream, err := s.streams.Stream(ctx, s.js, contract.StreamEvents)
	if err != nil {
		return nil, 0, err
	}
	raw, err := stream.GetLastMsgForSubject(ctx, contract.EventSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return s.storedQueued(ctx, id)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read the last event of %s: %w", id, err)
	}
	var ev contract.Event
	if err := json.Unmarshal(raw.Data, &ev); err != nil {
		s.log.WarnContext(ctx, "last_event_unreadable", "request_id", id, "stream_seq", raw.Sequence, "error", err)
		return nil, 0, nil
	}
	return &ev, raw.Sequence, nil
}

func (s *queueSweeper) storedQueued(ctx context.Context, id string) (*contract.Event, uint64, error) {
	_, events, err := s.store.Get(ctx, id, true)
	if errors.Is(err, auditstore.ErrNotFound) {
		return nil, 0, nil // purged meanwhile
	}
	if err != nil {
		return nil, 0, err
	}
	for _, ev := range events {
		if ev.Type == contract.EventQueued {
			return &ev, 0, nil
		}
	}
	return nil, 0, nil
}
