package live

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
)

// ServeAll streams every event the caller may see, optionally only those
// of ?username=, from now on (or after Last-Event-ID). It never ends by
// itself.
func (h *Handler) ServeAll(w http.ResponseWriter, r *http.Request) {
	visible, ok := h.visible(w, r)
	if !ok {
		return
	}
	if user := r.URL.Query().Get("username"); user != "" {
		if err := contract.ValidateUsername(user); err != nil {
			h.cfg.WriteError(w, r, err)
			return
		}
		caller := visible
		visible = func(u string) bool { return u == user && caller(u) }
	}
	after, err := lastEventID(r)
	if err != nil {
		h.cfg.WriteError(w, r, err)
		return
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{contract.SubjectEventsAll},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	}
	if after > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	}
	h.stream(w, r, cfg, visible)
}

// stream writes the events cfg selects until the client leaves or the
// connection fails.
func (h *Handler) stream(w http.ResponseWriter, r *http.Request, cfg jetstream.OrderedConsumerConfig, visible func(string) bool) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	cons, err := h.cfg.JS.OrderedConsumer(ctx, contract.StreamEvents, cfg)
	if err != nil {
		// The client is told only "unavailable": the cause goes to the log.
		h.cfg.Log.WarnContext(ctx, "sse_consumer_failed", "error", err)
		h.cfg.WriteError(w, r, unavailable(err))
		return
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(h.cfg.Buffer))
	if err != nil {
		h.cfg.Log.WarnContext(ctx, "sse_consumer_failed", "error", err)
		h.cfg.WriteError(w, r, unavailable(err))
		return
	}
	defer h.release(r.Context(), cons, it)

	// Next blocks; a reader goroutine lets the loop also watch the
	// heartbeat and the client. The unbuffered channel plus the pull
	// limit bound what one slow client can hold.
	msgs := make(chan jetstream.Msg)
	errc := make(chan error, 1)
	go func() {
		for {
			msg, err := it.Next()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- msg:
			case <-ctx.Done():
				return
			}
		}
	}()

	sw := h.start(w, r)
	if sw == nil {
		return
	}
	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errc:
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				h.cfg.Log.WarnContext(ctx, "sse_source_failed", "error", err)
			}
			return
		case <-heartbeat.C:
			if sw.comment("heartbeat") != nil {
				return
			}
		case msg := <-msgs:
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			if _, err := h.write(sw, meta.Sequence.Stream, msg.Data(), visible); err != nil {
				return
			}
		}
	}
}

// release stops the iterator and deletes the ordered consumer on the
// server at once. Stopping alone leaves it there for its inactive threshold
// (5 minutes), and STAGING_EVENTS allows 1000 consumers: a busy gateway
// would soon answer every new stream "maximum consumers limit reached".
func (h *Handler) release(ctx context.Context, cons jetstream.Consumer, it jetstream.MessagesContext) {
	it.Stop()
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.cfg.JS.DeleteConsumer(ctx, contract.StreamEvents, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		// The server removes it after the inactive threshold anyway.
		h.cfg.Log.DebugContext(ctx, "sse_consumer_delete_failed", "consumer", info.Name, "error", err)
	}
}
