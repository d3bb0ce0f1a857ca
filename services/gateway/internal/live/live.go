// Package live streams staging events to HTTP clients as Server-Sent
// Events: one request's events from its first (ending after its terminal
// event), or every event the caller may see from now on. Each SSE id is
// the event's STAGING_EVENTS stream sequence, so a client that reconnects
// with Last-Event-ID resumes exactly where it left off. One request's
// events are read by direct gets, woken by the stagings client's shared
// subscription; every event from now on is read through a JetStream
// ordered consumer: ephemeral, deleted when the connection ends.
package live

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/backoff"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// Defaults of Config.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultBuffer       = 64
	DefaultWriteTimeout = 30 * time.Second
)

// Visibility says which requests' events the caller of r may see: the
// returned func is asked with each event's username. An error refuses the
// whole stream (it is answered with writeError, so a *contract.Error
// chooses the status). The authentication layer provides it; nil lets
// everyone see everything (auth mode none).
type Visibility func(r *http.Request) (func(username string) bool, error)

// Config is what the handler needs.
type Config struct {
	JS jetstream.JetStream
	// Client reads a request whose events aged out of the stream from the
	// audit.
	Client *stagings.Client
	Log    *slog.Logger
	// WriteError answers an error before the stream starts (the API's
	// JSON error body).
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
	// Visible is the authorization hook; nil: everything is visible.
	Visible Visibility
	// Heartbeat is the interval of keep-alive comments (DefaultHeartbeat).
	Heartbeat time.Duration
	// Buffer is how many events one connection pulls ahead of what it has
	// written (DefaultBuffer): a slow client holds at most that many.
	Buffer int
	// WriteTimeout bounds writing one event to a client that stopped
	// reading (DefaultWriteTimeout).
	WriteTimeout time.Duration
}

// Handler serves the event streams.
type Handler struct{ cfg Config }

// New returns the handler.
func New(cfg Config) (*Handler, error) {
	if cfg.JS == nil || cfg.Client == nil || cfg.Log == nil || cfg.WriteError == nil {
		return nil, errors.New("live: JS, Client, Log and WriteError are required")
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	return &Handler{cfg: cfg}, nil
}

// visible returns the caller's visibility, or answers the refusal.
func (h *Handler) visible(w http.ResponseWriter, r *http.Request) (func(string) bool, bool) {
	if h.cfg.Visible == nil {
		return func(string) bool { return true }, true
	}
	f, err := h.cfg.Visible(r)
	if err != nil {
		h.cfg.WriteError(w, r, err)
		return nil, false
	}
	if f == nil {
		f = func(string) bool { return true }
	}
	return f, true
}

// lastEventID reads the Last-Event-ID header (or the last_event_id query
// parameter, for clients that cannot set headers): 0 when absent.
func lastEventID(r *http.Request) (uint64, error) {
	s := r.Header.Get("Last-Event-ID")
	if s == "" {
		s = r.URL.Query().Get("last_event_id")
	}
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, contract.Errorf(contract.CodeMalformed, "Last-Event-ID %q is not an event id this server sent (a stream sequence number)", s)
	}
	return n, nil
}

// ServeRequest streams the events of request mux.Vars(r)["id"] from its
// first (or after Last-Event-ID) and ends after its terminal event. A
// request whose events aged out of the stream gets one "state" event with
// its audit record, then the end.
func (h *Handler) ServeRequest(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if err := contract.ValidateID("id", id); err != nil {
		h.cfg.WriteError(w, r, err)
		return
	}
	visible, ok := h.visible(w, r)
	if !ok {
		return
	}
	after, err := lastEventID(r)
	if err != nil {
		h.cfg.WriteError(w, r, err)
		return
	}
	// The current state says whether the request exists and whose it is
	// before anything is streamed; its last event, one direct get, also
	// says whether the stream still holds its events.
	state, inStream, err := h.cfg.Client.LastState(r.Context(), id)
	if err == nil && !inStream {
		state, err = h.cfg.Client.Get(r.Context(), id) // the audit's record
	}
	if err != nil {
		h.cfg.WriteError(w, r, err)
		return
	}
	if !visible(state.Username) {
		// Not "forbidden": that would tell a stranger the id exists.
		h.cfg.WriteError(w, r, contract.Errorf(contract.CodeNotFound, "no staging request with id %s", id))
		return
	}
	if !inStream {
		sw := h.start(w, r)
		if sw == nil {
			return
		}
		data, err := json.Marshal(state)
		if err != nil {
			h.cfg.Log.ErrorContext(r.Context(), "sse_encode_failed", "error", err)
			return
		}
		_ = sw.event("", "state", data)
		return
	}
	h.streamRequest(w, r, id, after, visible)
}

// Retries of a read that a live event announced but the stream did not
// hold yet: NATS may deliver a published event before its stream has
// stored it. The last retry is about a second after the event; the
// heartbeat reads again after that anyway.
var retryDelay = backoff.Exponential{Base: 5 * time.Millisecond, Max: 640 * time.Millisecond}

const maxRetries = 8

// streamRequest writes request id's stored events after sequence after, then
// its new ones as they come, until its terminal event. Every event written
// is read from the stream by direct gets, in sequence order from the last
// one written, so none is skipped or written twice and each carries its
// sequence as SSE id; the client's shared watch (registered before the
// first read, so nothing stored after it goes unannounced) only says when
// to read again. Unlike a consumer per stream, this costs no JetStream API
// call and leaves no server state.
func (h *Handler) streamRequest(w http.ResponseWriter, r *http.Request, id string, after uint64, visible func(string) bool) {
	ctx := r.Context()
	watch, err := h.cfg.Client.Watch(id)
	if err != nil {
		h.cfg.Log.WarnContext(ctx, "sse_watch_failed", "error", err)
		h.cfg.WriteError(w, r, unavailable(err))
		return
	}
	defer func() { _ = watch.Close() }()

	sw := h.start(w, r)
	if sw == nil {
		return
	}
	// catchUp writes what the stream holds after the last event written;
	// found says whether there was any, done whether the stream ends.
	catchUp := func() (found, done bool) {
		for {
			msg, ok, err := h.cfg.Client.NextEvent(ctx, id, after)
			if err != nil {
				if ctx.Err() == nil {
					h.cfg.Log.WarnContext(ctx, "sse_source_failed", "error", err)
				}
				return found, true
			}
			if !ok {
				return found, false
			}
			found, after = true, msg.Sequence
			terminal, err := h.write(sw, msg.Sequence, msg.Data, visible)
			if err != nil || terminal {
				return found, true
			}
		}
	}
	if _, done := catchUp(); done {
		return
	}

	heartbeat := time.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	retries := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-heartbeat.C:
			if sw.comment("heartbeat") != nil {
				return
			}
			if _, done := catchUp(); done {
				return
			}
			continue
		case <-retry.C:
		case <-watch.Events():
			// One read answers every event announced so far.
			drain(watch.Events())
			retries = 0
		}
		found, done := catchUp()
		if done {
			return
		}
		if !found && retries < maxRetries {
			retries++
			retry.Reset(retryDelay.Delay(retries))
		}
	}
}

// drain empties c without waiting.
func drain[T any](c <-chan T) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

// write writes one stored event if it is a contract event the caller may
// see; terminal says whether it was the request's last.
func (h *Handler) write(sw *sseWriter, seq uint64, data []byte, visible func(string) bool) (terminal bool, err error) {
	var ev contract.Event
	if err := json.Unmarshal(data, &ev); err != nil || !visible(ev.Username) ||
		ev.Type == "" || strings.ContainsAny(string(ev.Type), "\r\n") {
		// Not an event of the contract, or not the caller's.
		return false, nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return false, nil
	}
	if err := sw.event(strconv.FormatUint(seq, 10), string(ev.Type), b.Bytes()); err != nil {
		return false, err
	}
	return ev.Type.Terminal(), nil
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %w", contract.Errorf(contract.CodeUnavailable, "the event stream is unreachable; try again later"), err)
}
