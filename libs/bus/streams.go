package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
)

// StreamOptions tunes the streams for a deployment.
type StreamOptions struct {
	// EventsMaxAge is how long STAGING_EVENTS keeps events
	// (default contract.DefaultEventsMaxAge).
	EventsMaxAge time.Duration
	// Replicas is the stream replica count (default 1; 3 on a cluster).
	Replicas int
	// RequestsMaxAge, RequestsMaxMsgs and RequestsMaxBytes bound
	// STAGING_REQUESTS (defaults contract.DefaultRequestsMax...): a
	// command no worker takes within the age is dropped (the audit then
	// records its request as failed, queue_expired), and a publish
	// that would pass the count or the size is refused (see IsStreamFull).
	RequestsMaxAge   time.Duration
	RequestsMaxMsgs  int64
	RequestsMaxBytes int64
}

// EnsureStreams creates or updates STAGING_REQUESTS and STAGING_EVENTS. Every
// service calls it at start; it is idempotent.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if o.EventsMaxAge <= 0 {
		o.EventsMaxAge = contract.DefaultEventsMaxAge
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.RequestsMaxAge <= 0 {
		o.RequestsMaxAge = contract.DefaultRequestsMaxAge
	}
	if o.RequestsMaxAge < contract.DedupWindow {
		// The server refuses it too, in words that name neither setting.
		return fmt.Errorf("the max age of %s (%s) must be at least its deduplication window (%s)", contract.StreamRequests, o.RequestsMaxAge, contract.DedupWindow)
	}
	if o.RequestsMaxMsgs <= 0 {
		o.RequestsMaxMsgs = contract.DefaultRequestsMaxMsgs
	}
	if o.RequestsMaxBytes <= 0 {
		o.RequestsMaxBytes = contract.DefaultRequestsMaxBytes
	}
	streams := []jetstream.StreamConfig{{
		Name:        contract.StreamRequests,
		Description: "Staging commands, one per item; a work queue consumed by the stager and the jupyter-bridge.",
		// Only the known methods' subjects: a command for an unknown method
		// gets no stream acknowledgement, so its publisher hears of it.
		Subjects:   contract.RequestSubjects(contract.Methods...),
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Duplicates: contract.DedupWindow,
		Replicas:   o.Replicas,
		// Bounded, and full means full: a new command is refused, so its
		// publisher hears of it, rather than an older one dropped unseen.
		MaxAge:   o.RequestsMaxAge,
		MaxMsgs:  o.RequestsMaxMsgs,
		MaxBytes: o.RequestsMaxBytes,
		Discard:  jetstream.DiscardNew,
	}, {
		Name:        contract.StreamEvents,
		Description: "Every event of every staging request (the last one on a request's subject is its state) and the download events of its link.",
		// Download events have subjects of their own, so that the last
		// message on staging.events.<id> stays the request's state. An
		// existing stream gains the subject on update.
		Subjects:    []string{contract.SubjectEventsAll, contract.SubjectDownloadsAll},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		MaxAge:      o.EventsMaxAge,
		Duplicates:  2 * time.Minute,
		Replicas:    o.Replicas,
		AllowDirect: true,
	}, {
		Name:        contract.StreamCancels,
		Description: "The cancel requests of staging requests, the last one per request, kept as long as a command may wait.",
		Subjects:    []string{contract.SubjectCancelAll},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		// Kept while the command may still be taken, so that a worker
		// taking it late, or again, finds the cancel.
		MaxAge:            o.RequestsMaxAge,
		MaxMsgsPerSubject: 1,
		Duplicates:        2 * time.Minute,
		Replicas:          o.Replicas,
		AllowDirect:       true,
	}, {
		Name:        contract.StreamExpiries,
		Description: "The expiry schedule of staged items (one message schedule per item) and the expiries due, a work queue of the stagers.",
		Subjects:    []string{contract.SubjectExpirySchedules, contract.SubjectExpiriesDue},
		// A due expiry goes to one stager and leaves once handled; a
		// schedule waits, unconsumed, until the server fires it. No max
		// age: a schedule may be years ahead.
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           jetstream.FileStorage,
		AllowMsgSchedules: true,
		MaxMsgsPerSubject: 1,
		Replicas:          o.Replicas,
		AllowDirect:       true,
	}}
	for _, cfg := range streams {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("create or update stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// ConsumerOptions describes a durable pull consumer.
type ConsumerOptions struct {
	Stream         string
	Durable        string
	FilterSubjects []string
	// AckWait is how long a delivery may go unacknowledged before the
	// server redelivers it; handlers report InProgress well inside it.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of one message.
	MaxDeliver int
	// MaxAckPending bounds the messages out at once.
	MaxAckPending int
}

// EnsureConsumer creates or updates a durable pull consumer with explicit
// acknowledgement.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, o ConsumerOptions) (jetstream.Consumer, error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       o.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: o.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(o.FilterSubjects) == 1 {
		cfg.FilterSubject = o.FilterSubjects[0]
	} else {
		cfg.FilterSubjects = o.FilterSubjects
	}
	c, err := js.CreateOrUpdateConsumer(ctx, o.Stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("create or update consumer %s on %s: %w", o.Durable, o.Stream, err)
	}
	return c, nil
}

// IsStreamFull reports whether err is a stream refusing a publish because
// it holds as many messages or bytes as it may (a DiscardNew stream at its
// limit): the publisher should try again later.
func IsStreamFull(err error) bool {
	apiErr, ok := errors.AsType[*jetstream.APIError](err)
	if !ok || apiErr.ErrorCode != jsErrCodeStreamStoreFailed {
		return false
	}
	return strings.Contains(apiErr.Description, "maximum messages exceeded") ||
		strings.Contains(apiErr.Description, "maximum bytes exceeded")
}

// jsErrCodeStreamStoreFailed is the server's JSStreamStoreFailedF, which
// nats.go does not name: the stream could not store the message, and the
// description says why.
const jsErrCodeStreamStoreFailed jetstream.ErrorCode = 10077

// Streams looks each stream up once and keeps its handle. A look-up is a
// round trip whose answer carries the stream's whole state; the handle it
// gives tells the client to read with direct gets, which any replica
// answers. Reads on the way of every request go through a Streams, not a
// look-up each. The zero value is ready to use; it is safe for concurrent
// use.
type Streams struct {
	mu     sync.Mutex
	byName map[string]jetstream.Stream
}

// Stream returns the handle of stream name, looked up with js the first
// time.
func (s *Streams) Stream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.byName[name]; ok {
		return st, nil
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	if s.byName == nil {
		s.byName = make(map[string]jetstream.Stream)
	}
	s.byName[name] = st
	return st, nil
}
