package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
)

// QueueMetrics reports the state of the work queue and the event stream as
// the JetStream server sees it, read at each scrape: what waits, what is out
// to a consumer, what is being redelivered. The numbers are the server's, so
// every process exposing them would expose the same: one service exposes
// them (the audit, docs/deployment.md says why), and rules take max() over
// its replicas.
type QueueMetrics struct {
	js      jetstream.JetStream
	log     *slog.Logger
	timeout time.Duration

	up, streamMsgs, streamBytes, commands, oldest, active         *prometheus.Desc
	pending, ackPending, maxAckPending, redelivered, waitingPulls *prometheus.Desc
}

// RegisterQueueMetrics registers the queue metrics of js on reg. A scrape
// reads them with at most timeout (default 5 s) of JetStream requests.
func RegisterQueueMetrics(reg prometheus.Registerer, js jetstream.JetStream, log *slog.Logger, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	stream, consumer := []string{"stream"}, []string{"stream", "consumer"}
	q := &QueueMetrics{
		js: js, log: log, timeout: timeout,
		up:            prometheus.NewDesc("staging_queue_up", "1 when the last scrape read every stream and consumer from JetStream, else 0 (the other queue metrics are then missing or partial).", nil, nil),
		streamMsgs:    prometheus.NewDesc("staging_stream_messages", "Messages in the stream: for STAGING_REQUESTS, commands not yet acknowledged.", stream, nil),
		streamBytes:   prometheus.NewDesc("staging_stream_bytes", "Bytes the stream holds.", stream, nil),
		commands:      prometheus.NewDesc("staging_queue_commands", "Commands of a method in STAGING_REQUESTS: waiting, or out to a worker and not yet acknowledged.", []string{"method"}, nil),
		oldest:        prometheus.NewDesc("staging_queue_oldest_command_age_seconds", "Age of the oldest command of a method still in STAGING_REQUESTS (0 when there is none).", []string{"method"}, nil),
		active:        prometheus.NewDesc("staging_queue_active_consumers", "Durable consumers of a method's commands that have a pull request waiting or a command out: 0 with commands waiting means no worker takes them.", []string{"method"}, nil),
		pending:       prometheus.NewDesc("staging_consumer_pending_messages", "Messages of the stream the durable consumer has not yet delivered (num_pending).", consumer, nil),
		ackPending:    prometheus.NewDesc("staging_consumer_ack_pending_messages", "Messages delivered by the durable consumer and not yet acknowledged (num_ack_pending).", consumer, nil),
		maxAckPending: prometheus.NewDesc("staging_consumer_max_ack_pending", "The durable consumer's limit on unacknowledged messages (max_ack_pending).", consumer, nil),
		redelivered:   prometheus.NewDesc("staging_consumer_redelivered_messages", "Unacknowledged messages the durable consumer has delivered more than once (num_redelivered).", consumer, nil),
		waitingPulls:  prometheus.NewDesc("staging_consumer_waiting_pulls", "Pull requests waiting at the durable consumer (num_waiting): 0 with messages pending means no worker is asking.", consumer, nil),
	}
	if err := reg.Register(q); err != nil {
		return fmt.Errorf("register queue metrics: %w", err)
	}
	return nil
}

// Describe implements prometheus.Collector.
func (q *QueueMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{q.up, q.streamMsgs, q.streamBytes, q.commands, q.oldest, q.active, q.pending, q.ackPending, q.maxAckPending, q.redelivered, q.waitingPulls} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. What cannot be read is left out
// and staging_queue_up says so; the scrape itself never fails.
func (q *QueueMetrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), q.timeout)
	defer cancel()
	var errs []error
	for _, name := range []string{contract.StreamRequests, contract.StreamEvents} {
		if err := q.collectStream(ctx, ch, name); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", name, err))
		}
	}
	up := 1.0
	if err := errors.Join(errs...); err != nil {
		up = 0
		q.log.WarnContext(ctx, "queue_metrics_incomplete", "error", err)
	}
	ch <- prometheus.MustNewConstMetric(q.up, prometheus.GaugeValue, up)
}

func (q *QueueMetrics) collectStream(ctx context.Context, ch chan<- prometheus.Metric, name string) error {
	s, err := q.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	var opts []jetstream.StreamInfoOpt
	if name == contract.StreamRequests {
		// Per subject, that is per method: few subjects, so a cheap answer.
		opts = append(opts, jetstream.WithSubjectFilter(contract.SubjectRequestsAll))
	}
	info, err := s.Info(ctx, opts...)
	if err != nil {
		return err
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(q.streamMsgs, float64(info.State.Msgs), name)
	gauge(q.streamBytes, float64(info.State.Bytes), name)
	// Durable consumers only: the gateway's live event streams are
	// ephemeral, many and short-lived.
	var errs []error
	var durables []*jetstream.ConsumerInfo
	consumers := s.ListConsumers(ctx)
	for c := range consumers.Info() {
		if c.Config.Durable == "" {
			continue
		}
		durables = append(durables, c)
		gauge(q.pending, float64(c.NumPending), name, c.Name)
		gauge(q.ackPending, float64(c.NumAckPending), name, c.Name)
		gauge(q.maxAckPending, float64(c.Config.MaxAckPending), name, c.Name)
		gauge(q.redelivered, float64(c.NumRedelivered), name, c.Name)
		gauge(q.waitingPulls, float64(c.NumWaiting), name, c.Name)
	}
	if err := consumers.Err(); err != nil {
		errs = append(errs, fmt.Errorf("list consumers: %w", err))
	}
	if name != contract.StreamRequests {
		return errors.Join(errs...)
	}
	for _, m := range contract.Methods {
		subject := contract.RequestSubject(m)
		n := info.State.Subjects[subject]
		gauge(q.commands, float64(n), string(m))
		active := 0
		for _, c := range durables {
			if takes(c.Config, subject) && (c.NumWaiting > 0 || c.NumAckPending > 0) {
				active++
			}
		}
		gauge(q.active, float64(active), string(m))
		age := 0.0
		if n > 0 {
			first, err := s.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(subject))
			switch {
			case errors.Is(err, jetstream.ErrMsgNotFound): // acknowledged meanwhile
			case err != nil:
				errs = append(errs, fmt.Errorf("oldest %s command: %w", m, err))
				continue
			default:
				age = max(time.Since(first.Time).Seconds(), 0)
			}
		}
		gauge(q.oldest, age, string(m))
	}
	return errors.Join(errs...)
}

// takes reports whether a consumer configured as c is delivered messages on
// subject (a literal subject).
func takes(c jetstream.ConsumerConfig, subject string) bool {
	filters := c.FilterSubjects
	if c.FilterSubject != "" {
		filters = append(filters, c.FilterSubject)
	}
	if len(filters) == 0 {
		return true
	}
	for _, f := range filters {
		if subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether the NATS subject filter matches the
// literal subject.
func subjectMatches(filter, subject string) bool {
	fs, ss := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range fs {
		switch {
		case f == ">":
			return len(ss) > i
		case i >= len(ss):
			return false
		case f != "*" && f != ss[i]:
			return false
		}
	}
	return len(fs) == len(ss)
}
