package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// A delivery that never ends in Handle (the process killed, a panic, which
// the policy Naks) is not recorded by Handle; once the consumer's
// MaxDeliver is used up the server stops delivering the command and
// publishes a max-deliveries advisory. The worker records the request as
// failed (retries_exhausted) from that advisory and removes the command
// from the work queue, where it would otherwise stay for ever.
//
// Advisories are core NATS messages: one published while no worker of the
// consumer is connected is lost, and its command stays in the stream.

// maxDeliveriesAdvisory is the part of nats-server's
// JSConsumerDeliveryExceededAdvisory the worker reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// maxDeliveriesSubject is where the server announces that durable on
// stream has used up its deliveries of a message.
func maxDeliveriesSubject(stream, durable string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + durable
}

// watchExhausted subscribes to the max-deliveries advisories of the
// worker's consumer, in a queue group so one worker of several handles
// each. The returned function unsubscribes.
func (w *Worker) watchExhausted(ctx context.Context) (stop func(), err error) {
	subject := maxDeliveriesSubject(contract.StreamRequests, w.o.Durable)
	sub, err := w.o.JS.Conn().QueueSubscribe(subject, w.o.Durable, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
			w.o.Log.WarnContext(ctx, "advisory_unreadable", "subject", m.Subject, "error", err)
			return
		}
		// The callback runs on the connection's goroutine for this
		// subscription; each advisory is handled in turn.
		hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := w.exhausted(hctx, adv); err != nil {
			w.o.Log.ErrorContext(hctx, "exhausted_not_recorded", "stream_seq", adv.StreamSeq, "error", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	return func() { _ = sub.Unsubscribe() }, nil
}

// exhausted records the command at adv.StreamSeq as failed and deletes it
// from the work queue. A command already gone (another worker, a late
// acknowledgement) needs nothing.
func (w *Worker) exhausted(ctx context.Context, adv maxDeliveriesAdvisory) error {
	stream, err := w.stream(ctx, contract.StreamRequests)
	if err != nil {
		return err
	}
	raw, err := stream.GetMsg(ctx, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get command %d: %w", adv.StreamSeq, err)
	}
	// Under the command's trace, when it carried one.
	ctx, span := w.o.Tracer.Start(bus.ExtractTrace(ctx, raw.Header), w.o.Source+".exhausted")
	defer span.End()
	var cmd contract.Command
	if jerr := json.Unmarshal(raw.Data, &cmd); jerr != nil || contract.ValidateID("id", cmd.ID) != nil {
		cmd = contract.Command{ID: uuid.NewString()}
	}
	ev := w.event(ctx, cmd, contract.EventFailed, int(adv.Deliveries))
	ev.Error = contract.Errorf(contract.CodeRetriesExhausted, "no delivery of %d finished (the %s crashed or was stopped each time)", adv.Deliveries, w.o.Source)
	if err := bus.PublishEvent(ctx, w.o.JS, ev); err != nil {
		return fmt.Errorf("publish failed event: %w", err)
	}
	w.metrics.ended(cmd.Method, "failed", ev.Error.Code)
	w.metrics.exhausted.WithLabelValues(metricMethod(cmd.Method)).Inc()
	w.o.Log.InfoContext(ctx, "staging_failed", "request_id", cmd.ID, "method", cmd.Method, "code", ev.Error.Code, "detail", ev.Error.Detail)
	if err := stream.DeleteMsg(ctx, adv.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete command %d: %w", adv.StreamSeq, err)
	}
	return nil
}
