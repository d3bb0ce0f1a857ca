package downloads

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// Reporter publishes download events (contract.DownloadEvent) off the
// download's path: Report only queues the event, and one goroutine
// publishes the queue. A download never waits for NATS: when the queue is
// full or a publish fails, the event is logged and counted, and the
// download goes on.
type Reporter struct {
	js     jetstream.JetStream
	log    *slog.Logger
	source string
	events *prometheus.CounterVec

	mu     sync.Mutex // guards closed and sends on queue
	closed bool
	queue  chan queued
	done   chan struct{}
}

type queued struct {
	ctx context.Context
	ev  contract.DownloadEvent
}

// Queue and publish limits. The queue holds a burst of many downloads
// starting at once; a publish that takes longer than publishTimeout is
// given up (JetStream away), and the events behind it wait no longer.
const (
	queueSize      = 1024
	publishTimeout = 5 * time.Second
)

// NewReporter starts a reporter publishing on js as source, its metric
// registered on reg. Close it when the handler serves no more.
func NewReporter(js jetstream.JetStream, source string, log *slog.Logger, reg prometheus.Registerer) *Reporter {
	r := &Reporter{
		js: js, log: log, source: source,
		events: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "staging_stager_download_events_total",
			Help: "Download events, by result: published, failed (the publish failed) or dropped (the queue was full or closed).",
		}, []string{"result"}),
		queue: make(chan queued, queueSize),
		done:  make(chan struct{}),
	}
	for _, result := range []string{"published", "failed", "dropped"} {
		r.events.WithLabelValues(result)
	}
	go r.run()
	return r
}

// Report queues an event about link, filling in its id, time, source and
// the link's request fields. It never blocks.
func (r *Reporter) Report(ctx context.Context, link Link, ev contract.DownloadEvent) {
	ev.SpecVersion = contract.SpecVersion
	ev.ID = uuid.NewString()
	ev.Time = time.Now().UTC()
	ev.Source = r.source
	ev.RequestID = link.RequestID
	ev.Username = link.Username
	ev.LocalPathOnStorage, ev.DID = link.Path, link.DID
	ev.TraceID = link.TraceID
	// The publish outlives the HTTP request; it keeps its trace only.
	q := queued{ctx: context.WithoutCancel(ctx), ev: ev}
	r.mu.Lock()
	sent := false
	if !r.closed {
		select {
		case r.queue <- q:
			sent = true
		default:
		}
	}
	r.mu.Unlock()
	if !sent {
		r.events.WithLabelValues("dropped").Inc()
		r.log.WarnContext(ctx, "download_event_dropped", "request_id", ev.RequestID, "type", string(ev.Type), "download_id", ev.DownloadID)
	}
}

func (r *Reporter) run() {
	defer close(r.done)
	for q := range r.queue {
		ctx, cancel := context.WithTimeout(q.ctx, publishTimeout)
		err := bus.PublishDownload(ctx, r.js, q.ev)
		cancel()
		if err != nil {
			r.events.WithLabelValues("failed").Inc()
			r.log.WarnContext(q.ctx, "download_event_not_published", "request_id", q.ev.RequestID, "type", string(q.ev.Type),
				"download_id", q.ev.DownloadID, "error", err)
			continue
		}
		r.events.WithLabelValues("published").Inc()
	}
}

// Close stops taking events and returns once those queued are published
// (or given up), or after wait. Later reports are dropped.
func (r *Reporter) Close(wait time.Duration) {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.queue)
	}
	r.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		r.log.Warn("download_events_not_flushed", "left", len(r.queue))
	}
}
