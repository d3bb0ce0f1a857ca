package recorder

import (
	"context"
	"errors"
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/encoding/json"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// add decodes msg, by its subject a download event or a request event,
// checks it against the event rules and adds it to the batch. A message
// that breaks them is reported by a *contract.Error naming the rule; any
// other error means it could not be checked. An event without a trace id
// takes that of the trace it travelled in (in ctx).
func (r *Recorder) add(ctx context.Context, b *batch, msg jetstream.Msg) (requestID, typ string, err error) {
	traceID := ""
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		traceID = sc.TraceID().String()
	}
	if len(msg.Data()) > contract.MaxEventSize {
		return "", "", contract.Errorf(contract.CodeBodyTooLarge, "message of %d bytes; events have at most %d", len(msg.Data()), contract.MaxEventSize)
	}
	if contract.IsDownloadSubject(msg.Subject()) {
		dl, err := decode[contract.DownloadEvent](msg, "a download event")
		if err != nil {
			return "", "", err
		}
		filled := fillTrace(&dl.TraceID, traceID)
		b.store.Downloads = append(b.store.Downloads, dl)
		b.keep(dl.ID, msg.Data(), filled)
		return dl.RequestID, string(dl.Type), nil
	}
	ev, err := decode[contract.Event](msg, "an event")
	if err != nil {
		return "", "", err
	}
	if err := r.checkStarted(ctx, ev, msg); err != nil {
		return "", "", err
	}
	filled := fillTrace(&ev.TraceID, traceID)
	b.store.Events = append(b.store.Events, ev)
	b.keep(ev.ID, msg.Data(), filled)
	return ev.RequestID, string(ev.Type), nil
}

// decode decodes msg as an E (what names it for the error) and checks it
// against its rules and its subject.
func decode[E interface {
	Validate() error
	CheckSubject(subject string) error
}](msg jetstream.Msg, what string) (E, error) {
	var e E
	if err := unmarshal(msg.Data(), &e); err != nil {
		return e, contract.Errorf(contract.CodeMalformed, "not %s: %v", what, err)
	}
	return e, errors.Join(e.Validate(), e.CheckSubject(msg.Subject()))
}

// fillTrace sets an empty trace id to traceID and reports whether it did.
func fillTrace(field *string, traceID string) bool {
	if *field != "" || traceID == "" {
		return false
	}
	*field = traceID
	return true
}

// invalidOf is msg, which broke the event rules with err, as the store
// keeps it.
func invalidOf(msg jetstream.Msg, err error) auditstore.Invalid {
	inv := auditstore.Invalid{
		Subject: msg.Subject(), Payload: maskSecrets(msg.Data()), ReceivedAt: time.Now(),
		Code: contract.CodeOf(err), Reason: contract.AsError(err).Detail,
	}
	inv.PublishedAt = inv.ReceivedAt
	if meta, err := msg.Metadata(); err == nil {
		inv.StreamSeq, inv.PublishedAt = meta.Sequence.Stream, meta.Timestamp
	}
	return inv
}

// secretRE matches a jupyter_token field (Go's decoder takes the name in
// any case): a command published on an event subject by mistake carries
// one, and secrets never reach the audit.
var secretRE = regexp.MustCompile(`(?i)("jupyter_token"\s*:\s*)"(?:[^"\\]|\\.)*"`)

// maskSecrets is data with the value of every jupyter_token field masked.
func maskSecrets(data []byte) []byte {
	return secretRE.ReplaceAll(data, []byte(`$1"***"`))
}

// keep has the store save event id's message data as received, unless
// decoding filled something in (then the store encodes the event it has)
// or the data is not valid UTF-8 (which the decoder replaced, and which a
// MySQL text column would refuse).
func (b *batch) keep(id string, data []byte, filled bool) {
	if filled || !utf8.Valid(data) {
		return
	}
	if b.store.Received == nil {
		b.store.Received = make(map[string][]byte)
	}
	b.store.Received[id] = data
}

// unmarshal decodes a message as encoding/json does (the same field
// names matched the same way, the same errors, invalid UTF-8 replaced),
// only faster: on a backlog, decoding was the largest part of the audit's
// own CPU, which the database beside it on the same cores then lacks
// (docs/benchmarks.md, Audit).
func unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
