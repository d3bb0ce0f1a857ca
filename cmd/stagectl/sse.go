package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The shapes below are the gateway's documented JSON (openapi.json), kept
// here rather than imported: the client depends on the API, not on the
// server's code, and installs on its own with go install.

// sseFrame is one event of a text/event-stream.
type sseFrame struct {
	ID    string
	Event string
	Data  string
}

// readSSE reads frames from r and hands each to fn until the stream ends,
// fn returns false, or r fails. It also reports the server's retry delay.
// Comments (heartbeats) are skipped.
func readSSE(r io.Reader, fn func(sseFrame) bool, retry func(time.Duration)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var f sseFrame
	var data []string
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			if len(data) > 0 || f.Event != "" {
				f.Data = strings.Join(data, "\n")
				if !fn(f) {
					return nil
				}
			}
			f.Event, data = "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			data = append(data, value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && retry != nil {
				retry(time.Duration(ms) * time.Millisecond)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// Reconnection of event streams: the first retry comes quickly (a proxy
// cut the connection), later ones back off up to the server's retry:
// value; a stream that fails this many times in a row without an event is
// given up.
const (
	firstReconnect = 100 * time.Millisecond
	maxReconnects  = 8
	// streamIdle is how long a stream may be silent before it is taken for
	// dead; the server sends a heartbeat every 15 s.
	streamIdle = 45 * time.Second
)

// followEvents follows request id's event stream until its terminal event,
// handing fn the request's state after each event, and returns the final
// state. A dropped connection is resumed with Last-Event-ID, so no event
// is handed twice or lost.
func (c *client) followEvents(ctx context.Context, id string, fn func(staging)) (staging, error) {
	var last staging
	lastID := ""
	maxDelay, delay := 3*time.Second, firstReconnect
	for failures := 0; ; {
		done, got, err := c.events(ctx, id, lastID, func(s staging, eventID string) {
			last = mergeState(last, s)
			if eventID != "" {
				lastID = eventID
			}
			fn(last)
		}, func(d time.Duration) { maxDelay = d })
		switch {
		case done:
			return last, nil
		case ctx.Err() != nil:
			return last, ctx.Err()
		}
		var se *serverError
		if errors.As(err, &se) && se.Status < 500 {
			return last, err // unknown request, refused: retrying will not help
		}
		if got {
			failures, delay = 0, firstReconnect
		}
		if failures++; failures > maxReconnects {
			if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
				err = &unreachableError{URL: c.base.String(), Reason: "the event stream of " + id + " kept ending before the request did"}
			}
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, maxDelay)
	}
}

// events reads one connection of request id's event stream, after event
// lastID. done says the request's terminal event came; got, that any event
// did.
func (c *client) events(ctx context.Context, id, lastID string, fn func(s staging, eventID string), retry func(time.Duration)) (done, got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hdr := http.Header{"Accept": {"text/event-stream"}}
	if lastID != "" {
		hdr.Set("Last-Event-ID", lastID)
	}
	resp, err := c.do(ctx, http.MethodGet, "/api/v1/stagings/"+url.PathEscape(id)+"/events", nil, hdr)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	// A connection that went silent (no heartbeat) is dead: end it.
	idle := time.AfterFunc(streamIdle, cancel)
	defer idle.Stop()
	body := readerFunc(func(p []byte) (int, error) {
		idle.Reset(streamIdle)
		return resp.Body.Read(p)
	})
	err = readSSE(body, func(f sseFrame) bool {
		s, ok := frameState(f)
		if !ok {
			return true
		}
		got = true
		fn(s, f.ID)
		done = s.finished()
		return !done
	}, retry)
	return done, got, err
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// frameState reads the request's state from one SSE frame: a staging event
// (queued, started, resolved, progress, ... ) or, for a request whose events aged
// out, a "state" frame holding its record.
func frameState(f sseFrame) (staging, bool) {
	if f.Event == "state" {
		var s staging
		return s, json.Unmarshal([]byte(f.Data), &s) == nil && s.ID != ""
	}
	var ev event
	if json.Unmarshal([]byte(f.Data), &ev) != nil || ev.RequestID == "" {
		return staging{}, false
	}
	s := ev.staging
	s.ID, s.UpdatedAt = ev.RequestID, ev.Time
	switch ev.Type {
	case "queued", "rejected", "succeeded", "failed":
		s.Status = ev.Type
	case "started", "resolved", "progress":
		s.Status = "running"
	default:
		// A type from a newer server (cancelled, say): a lifecycle end.
		s.Status = ev.Type
	}
	return s, true
}

// mergeState is the state after event s: an event carries the request's
// fields and what changed, so what it lacks (the last progress) is kept.
func mergeState(prev, s staging) staging {
	if s.Progress == nil && s.Status == prev.Status {
		s.Progress = prev.Progress
	}
	if s.CreatedAt == nil {
		s.CreatedAt = prev.CreatedAt
	}
	return s
}
