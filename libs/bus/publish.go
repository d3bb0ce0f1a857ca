package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/skao/skao-staging/libs/contract"
)

// PublishCommand publishes cmd on its method's subject with Nats-Msg-Id set to
// the request id, so a repeated submission within the dedup window is
// dropped by the server, and the trace context of ctx in the headers.
func PublishCommand(ctx context.Context, js jetstream.JetStream, cmd contract.Command) error {
	return publish(ctx, js, contract.RequestSubject(cmd.Method), cmd.ID, cmd)
}

// PublishEvent publishes ev on its request's event subject with Nats-Msg-Id
// set to the event id. opts add conditions, such as
// jetstream.WithExpectLastSequencePerSubject for an event that must follow
// the one its publisher read (see IsWrongLastSequence).
func PublishEvent(ctx context.Context, js jetstream.JetStream, ev contract.Event, opts ...jetstream.PublishOpt) error {
	return publish(ctx, js, contract.EventSubject(ev.RequestID), ev.ID, ev, opts...)
}

// IsWrongLastSequence reports whether a publish was refused because its
// subject's last message was no longer the one it expected: another
// publisher got there first.
func IsWrongLastSequence(err error) bool {
	apiErr, ok := errors.AsType[*jetstream.APIError](err)
	if !ok {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// PublishCancel stores c on its request's cancel subject.
func PublishCancel(ctx context.Context, js jetstream.JetStream, c contract.CancelRequest) error {
	return publish(ctx, js, contract.CancelSubject(c.RequestID), c.ID, c)
}

// PublishDownload publishes ev on its request's download subject with
// Nats-Msg-Id set to the event id.
func PublishDownload(ctx context.Context, js jetstream.JetStream, ev contract.DownloadEvent) error {
	return publish(ctx, js, contract.DownloadSubject(ev.RequestID), ev.ID, ev)
}

// PublishTimeout bounds the wait for the stream's acknowledgement of one
// publish, whatever the caller's deadline: a worker's context may allow
// hours of work, and a publish the server never acknowledges (a missing
// permission, a stream gone) must fail and be retried, not hang.
const PublishTimeout = 10 * time.Second

// A stream whose leader is lost (a cluster node dies) answers nothing until
// another is elected, a few seconds: a publish sent to the lost leader is
// sent again after publishAttempt, one that finds no responder after
// publishRetryWait, as often as fits in PublishTimeout. The message id is
// the same every time, so the stream keeps one copy however many arrive.
const (
	publishAttempt   = 2 * time.Second
	publishRetryWait = 250 * time.Millisecond
)

func publish(ctx context.Context, js jetstream.JetStream, subject, msgID string, v any, opts ...jetstream.PublishOpt) error {
	ctx, cancel := context.WithTimeout(ctx, PublishTimeout)
	defer cancel()
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message for %s: %w", subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	InjectTrace(ctx, msg.Header)
	opts = append(opts, jetstream.WithMsgID(msgID), jetstream.WithRetryAttempts(0))
	for {
		actx, acancel := context.WithTimeout(ctx, publishAttempt)
		_, err = js.PublishMsg(actx, msg, opts...)
		acancel()
		if err == nil {
			return nil
		}
		if !leaderLost(err) {
			return fmt.Errorf("publish %s: %w", subject, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish %s: %w", subject, err)
		case <-time.After(publishRetryWait):
		}
	}
}

// leaderLost reports whether a publish failed for want of an answer from the
// stream, as when its leader is lost, rather than for a refusal.
func leaderLost(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrTimeout)
}

// InjectTrace writes the W3C trace context of ctx into NATS headers
// (lower-case "traceparent", as the W3C specification spells it).
func InjectTrace(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, headerCarrier(h))
}

// ExtractTrace returns ctx carrying the trace context found in NATS headers.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return otel.GetTextMapPropagator().Extract(ctx, headerCarrier(h))
}

// headerCarrier adapts NATS headers, which are case-sensitive, to the
// propagation API: it writes keys as given and reads them in any case, so
// "traceparent" and "Traceparent" from other publishers both work.
type headerCarrier nats.Header

var _ propagation.TextMapCarrier = headerCarrier(nil)

func (c headerCarrier) Get(key string) string {
	if v := nats.Header(c).Get(key); v != "" {
		return v
	}
	for k, vs := range c {
		if strings.EqualFold(k, key) && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
