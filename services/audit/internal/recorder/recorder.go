// Package recorder moves events and download events from the durable audit
// consumer on STAGING_EVENTS into the audit store, a batch at a time.
//
// The batch is the unit of work, so acknowledgement is done here rather than
// with bus.AckPolicy, which settles each message on its own and gives up
// after MaxDeliver: a batch is committed in one transaction and only then
// are its messages acknowledged; if the commit fails, every message of the
// batch is nak'ed with a growing delay and the consumer, whose MaxDeliver is
// unbounded, delivers them again until the database takes them. Events are
// keyed by id in the store, so a batch that is committed but not
// acknowledged (a crash in between, a lost ack) changes nothing when it
// comes again.
//
// Every message is checked against the event rules (contract.Event.Validate,
// its subject, and for progress and succeeded a started event before it in
// the stream) before it can become history. One that breaks them is stored
// with its batch in the invalid events table instead, apart from every
// request, then acknowledged like the rest: counted, logged once, and
// listed on contract.SubjectAuditInvalid.
package recorder

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/backoff"
	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// Store stores batches of events, each in one transaction in two steps:
// Stage inserts its events, then the recorder commits it (merging the
// events into their requests' rows).
type Store interface {
	Stage(ctx context.Context, b auditstore.Batch) (*auditstore.Staged, error)
}

// Stream reads STAGING_EVENTS (a jetstream.Stream): the earlier events of
// a request, to find its started event.
type Stream interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
}

// Options tune the recorder; each must be set (audit.Config holds the
// defaults).
type Options struct {
	// BatchSize is the most events fetched and committed at once.
	BatchSize int
	// BatchWait is how long a fetch waits for a full batch.
	BatchWait time.Duration
	// RetryMin and RetryMax bound the delay after a failed batch before
	// its events come again; it doubles with each failure in a row.
	RetryMin, RetryMax time.Duration
	// ApplyTimeout bounds one batch's transaction; keep it well inside
	// the consumer's AckWait.
	ApplyTimeout time.Duration
}

// pendingEvery is how often the consumer's backlog is sampled.
const pendingEvery = 5 * time.Second

// Recorder consumes events into the store.
type Recorder struct {
	cons   jetstream.Consumer
	stream Stream
	db     Store
	opts   Options
	// started holds requests whose started event the recorder has seen
	// lately, so that their progress and succeeded events need no look-up
	// in the stream. Only the fetching goroutine uses it.
	started recentSet
	log     *slog.Logger
	tracer  trace.Tracer
	metrics metrics

	mu      sync.Mutex
	lastErr error
}

type metrics struct {
	events      *prometheus.CounterVec
	invalid     *prometheus.CounterVec
	rows        prometheus.Counter
	batchSize   prometheus.Histogram
	batchTime   prometheus.Histogram
	dbErrors    prometheus.Counter
	pending     prometheus.Gauge
	ackFailures prometheus.Counter
}

// New returns a recorder of cons, a consumer of stream, into store, its
// metrics registered on reg.
func New(cons jetstream.Consumer, stream Stream, store Store, opts Options, log *slog.Logger, tp trace.TracerProvider, reg prometheus.Registerer) *Recorder {
	f := promauto.With(reg)
	m := metrics{
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_audit_events_total",
			Help: "Messages consumed by the audit, by result: stored, duplicate (already stored, changed nothing) or invalid (broke the event rules, stored apart).",
		}, []string{"result"}),
		invalid: f.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_audit_events_invalid_total",
			Help: "Messages the audit refused to record as events, by reason (an error code); each is stored once among the invalid events.",
		}, []string{"reason"}),
		rows: f.NewCounter(prometheus.CounterOpts{
			Name: "staging_audit_rows_written_total",
			Help: "Request rows inserted or updated by the audit.",
		}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "staging_audit_batch_size",
			Help:    "Events per batch the audit fetched.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		batchTime: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "staging_audit_batch_seconds",
			Help:    "Time to store and acknowledge one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		dbErrors: f.NewCounter(prometheus.CounterOpts{
			Name: "staging_audit_db_errors_total",
			Help: "Batches the audit database failed to commit; their events are delivered again.",
		}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "staging_audit_consumer_pending",
			Help: "Events on STAGING_EVENTS not yet delivered to the audit (sampled).",
		}),
		ackFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "staging_audit_ack_failures_total",
			Help: "Acknowledgements that could not be sent; the events come again and change nothing.",
		}),
	}
	for _, result := range []string{"stored", "duplicate", "invalid"} {
		m.events.WithLabelValues(result)
	}
	return &Recorder{
		cons: cons, stream: stream, db: store, opts: opts, log: log,
		started: newRecentSet(recentStarted),
		tracer:  tp.Tracer("skao-staging/audit"), metrics: m,
	}
}

// Err is the error of the last batch the store refused, nil once a batch
// is stored again. The readiness check reports it.
func (r *Recorder) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

func (r *Recorder) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

// Run records events until ctx is cancelled, then finishes the batches in
// hand (stores and acknowledges them) and returns nil.
//
// Batches go through three steps: fetched (and decoded), staged (their
// events inserted in a transaction), then committed and acknowledged.
// The steps of consecutive batches overlap, so the database need not wait
// for NATS or for the commit before; this pays on a backlog
// (docs/benchmarks.md, Audit: "a batch's events inserted while the batch
// before commits"). When a batch is not stored, its messages are given
// back and nothing more is staged until the back-off has passed: the
// delay doubles with each failed batch in a row, from RetryMin up to
// RetryMax. A batch already staged behind it commits after the back-off
// (or fails in turn): a batch's rows end the same whichever of two
// batches commits first.
func (r *Recorder) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { r.samplePending(ctx) })

	// Work outlives ctx so that a batch fetched is finished, not dropped
	// half-acknowledged.
	work := context.WithoutCancel(ctx)
	fetched := make(chan batch, 1)
	wg.Go(func() {
		defer close(fetched)
		for ctx.Err() == nil {
			if b, ok := r.fetch(ctx, work); ok {
				fetched <- b
			}
		}
	})
	retry := backoff.Exponential{Base: r.opts.RetryMin, Max: r.opts.RetryMax}
	failures := 0
	next := r.stageNext(fetched, work)
	for {
		b, ok := <-next
		if !ok {
			return nil // nothing more fetched
		}
		next = nil
		if b.err == nil {
			next = r.stageNext(fetched, work) // while b commits
			b.err = r.commit(work, b)
		}
		if b.err == nil {
			failures = 0
			continue
		}
		failures++
		d := retry.Delay(failures)
		r.giveBack(work, b, failures, d)
		_ = backoff.Wait(ctx, d) // ends early only when Run does
		if next == nil {
			next = r.stageNext(fetched, work)
		}
	}
}

// stageNext stages the next batch fetched, in the background. The channel
// gives the staged batch, or is closed when nothing more is fetched.
func (r *Recorder) stageNext(fetched <-chan batch, work context.Context) <-chan stagedBatch {
	out := make(chan stagedBatch, 1)
	go func() {
		defer close(out)
		b, ok := <-fetched
		if !ok {
			return
		}
		sb := stagedBatch{batch: b, start: time.Now()}
		sb.ctx, sb.cancel = context.WithTimeout(work, r.opts.ApplyTimeout)
		sb.staged, sb.err = r.db.Stage(sb.ctx, b.store)
		out <- sb
	}()
	return out
}

// stagedBatch is a batch through Stage: its open transaction, or the
// error.
type stagedBatch struct {
	batch
	start  time.Time
	staged *auditstore.Staged
	err    error
	// ctx bounds the batch's transaction from staging to commit (the
	// ApplyTimeout); cancel ends it.
	ctx    context.Context
	cancel context.CancelFunc
}

// batch is one fetch: the events to store and the messages they came in.
type batch struct {
	store auditstore.Batch
	msgs  []jetstream.Msg
	spans []trace.Span
}

// fetch pulls and decodes the next batch. It reports false when there is
// nothing to store.
func (r *Recorder) fetch(ctx, work context.Context) (batch, bool) {
	mb, err := r.cons.Fetch(r.opts.BatchSize, jetstream.FetchMaxWait(r.opts.BatchWait))
	if err != nil {
		// NATS is away; the client reconnects by itself.
		r.log.WarnContext(ctx, "fetch_failed", "error", err)
		_ = backoff.Wait(ctx, r.opts.RetryMin)
		return batch{}, false
	}
	var msgs []jetstream.Msg
	for msg := range mb.Messages() {
		msgs = append(msgs, msg)
	}
	if err := mb.Error(); err != nil {
		r.log.WarnContext(ctx, "fetch_incomplete", "error", err, "messages", len(msgs))
	}
	if len(msgs) == 0 {
		return batch{}, false
	}
	r.metrics.batchSize.Observe(float64(len(msgs)))
	b := batch{
		msgs:  make([]jetstream.Msg, 0, len(msgs)),
		spans: make([]trace.Span, 0, len(msgs)),
	}
	for _, msg := range msgs {
		mctx := bus.ExtractTrace(work, msg.Headers())
		requestID, typ, err := r.add(mctx, &b, msg)
		if _, ok := errors.AsType[*contract.Error](err); ok {
			b.store.Invalid = append(b.store.Invalid, invalidOf(msg, err))
			requestID, typ = "", "invalid"
		} else if err != nil {
			// The stream could not be read; the message comes again.
			r.log.WarnContext(mctx, "event_not_checked", "subject", msg.Subject(), "error", err)
			if err := msg.NakWithDelay(r.opts.RetryMin); err != nil {
				r.log.WarnContext(mctx, "nak_failed", "subject", msg.Subject(), "error", err)
			}
			continue
		}
		_, span := r.tracer.Start(mctx, "audit record", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("staging.request_id", requestID), attribute.String("staging.event_type", typ),
				attribute.Int("staging.audit.batch_size", len(msgs))))
		if err != nil {
			span.SetStatus(codes.Error, string(contract.CodeOf(err)))
		}
		b.msgs, b.spans = append(b.msgs, msg), append(b.spans, span)
	}
	return b, len(b.msgs) > 0
}

// commit commits a staged batch, then acknowledges its messages. It
// returns the store's error, the messages not yet settled.
func (r *Recorder) commit(ctx context.Context, b stagedBatch) error {
	stats, err := b.staged.Commit(b.ctx)
	b.cancel()
	if err != nil {
		return err
	}
	if r.Err() != nil {
		r.log.InfoContext(ctx, "database_recovered")
	}
	r.setErr(nil)
	// Counted before the acknowledgements: whoever sees an event
	// acknowledged sees it counted.
	r.metrics.events.WithLabelValues("stored").Add(float64(stats.Events))
	r.metrics.events.WithLabelValues("duplicate").Add(float64(stats.Duplicates))
	r.metrics.events.WithLabelValues("invalid").Add(float64(len(stats.Invalid)))
	r.metrics.rows.Add(float64(stats.Rows))
	for _, i := range stats.Invalid {
		inv := b.store.Invalid[i]
		r.metrics.invalid.WithLabelValues(string(inv.Code)).Inc()
		r.log.WarnContext(ctx, "event_invalid", "subject", inv.Subject, "stream_seq", inv.StreamSeq, "code", inv.Code, "reason", inv.Reason)
	}
	for i, msg := range b.msgs {
		if err := msg.Ack(); err != nil {
			r.metrics.ackFailures.Inc()
			r.log.WarnContext(ctx, "ack_failed", "subject", msg.Subject(), "error", err)
		}
		b.spans[i].End()
	}
	r.metrics.batchTime.Observe(time.Since(b.start).Seconds())
	return nil
}

// giveBack settles the messages of a batch not stored, the failures-th
// in a row: they come again after d, and the readiness check reports the
// batch's error until a batch is stored.
func (r *Recorder) giveBack(ctx context.Context, b stagedBatch, failures int, d time.Duration) {
	b.cancel()
	r.metrics.dbErrors.Inc()
	r.setErr(b.err)
	r.log.ErrorContext(ctx, "batch_not_stored", "error", b.err, "events", len(b.msgs), "retry_in", d.String(), "failures_in_a_row", failures)
	for i, msg := range b.msgs {
		if err := msg.NakWithDelay(d); err != nil {
			// Not lost either way: unacknowledged, it comes again
			// after AckWait.
			r.log.WarnContext(ctx, "nak_failed", "subject", msg.Subject(), "error", err)
		}
		b.spans[i].SetStatus(codes.Error, "batch not stored")
		b.spans[i].End()
	}
}

func (r *Recorder) samplePending(ctx context.Context) {
	t := time.NewTicker(pendingEvery)
	defer t.Stop()
	for {
		info, err := r.cons.Info(ctx)
		if err == nil {
			r.metrics.pending.Set(float64(info.NumPending))
		} else if !errors.Is(err, context.Canceled) {
			r.log.DebugContext(ctx, "consumer_info_failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
