package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The shapes below are the gateway's documented JSON (openapi.json), kept
// here rather than imported: the client depends on the API, not on the
// server's code, and installs on its own with go install.

// apiError is the gateway's error body: a stable code and a human detail.
type apiError struct {
	Code      string `json:"code"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id,omitempty"`
	// ID and StatusURL are set when the refused request was recorded.
	ID        string `json:"id,omitempty"`
	StatusURL string `json:"status_url,omitempty"`
}

// progress is how far a running request has got.
type progress struct {
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
}

// staging is a request's state (GET /api/v1/stagings/{id}); events carry
// the same fields, so one type reads both.
type staging struct {
	ID                 string    `json:"id"`
	JobID              string    `json:"job_id,omitempty"`
	Status             string    `json:"status"`
	Method             string    `json:"method"`
	Username           string    `json:"username"`
	LocalPathOnStorage string    `json:"local_path_on_storage"`
	RelativePath       string    `json:"relative_path"`
	Outcome            string    `json:"outcome,omitempty"`
	Message            string    `json:"message,omitempty"`
	Error              *apiError `json:"error,omitempty"`
	Progress           *progress `json:"progress,omitempty"`
	Bytes              int64     `json:"bytes"`
	Files              int64     `json:"files"`
	Adler32            string    `json:"adler32,omitempty"`
	DownloadURL        string    `json:"download_url,omitempty"`
	// ExpiresAt is when the staged copy or link expires, on servers that
	// report it (request lifetimes).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// finished reports whether no event follows for the request. A status
// this client does not know (cancelled, say, from a newer server) is taken
// as an end: the statuses of a request still going are few and old.
func (s staging) finished() bool {
	switch s.Status {
	case "", "waiting", "queued", "running":
		return false
	}
	return true
}

// event is one SSE event of a request's stream. Its data is a staging
// event: the request's fields plus type, time and progress.
type event struct {
	staging
	Type      string    `json:"type"`
	RequestID string    `json:"request_id"`
	Time      time.Time `json:"time"`
}

// record is one row of the audit history (GET /api/v1/stagings).
type record struct {
	ID                 string     `json:"id"`
	JobID              string     `json:"job_id,omitempty"`
	Method             string     `json:"method"`
	Username           string     `json:"username"`
	LocalPathOnStorage string     `json:"local_path_on_storage"`
	RelativePath       string     `json:"relative_path"`
	Status             string     `json:"status"`
	Outcome            string     `json:"outcome,omitempty"`
	ErrorCode          string     `json:"error_code,omitempty"`
	ErrorReason        string     `json:"error_reason,omitempty"`
	Bytes              int64      `json:"bytes"`
	Files              int64      `json:"files"`
	Adler32            string     `json:"adler32,omitempty"`
	Downloads          int64      `json:"downloads,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
	FinishedAt         *time.Time `json:"finished_at,omitempty"`
}

type recordPage struct {
	Items      []record `json:"items"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// item is one item to stage: the body of POST /api/v1/stagings and an
// element of a job's items.
type item struct {
	Method             string `json:"method"`
	Username           string `json:"username"`
	LocalPathOnStorage string `json:"local_path_on_storage"`
	RelativePath       string `json:"relative_path"`
	ExpectedAdler32    string `json:"expected_adler32,omitempty"`
	// Lifetime (seconds) is sent only when asked for: servers without
	// request lifetimes do not know the field.
	Lifetime int64 `json:"lifetime,omitempty"`
}

type submitted struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	StatusURL string `json:"status_url"`
}

type jobItem struct {
	ID     string    `json:"id"`
	Status string    `json:"status"`
	Error  *apiError `json:"error,omitempty"`
}

type jobSubmitted struct {
	JobID     string    `json:"job_id"`
	StatusURL string    `json:"status_url"`
	Items     []jobItem `json:"items"`
	// Replayed is set by the client when the server answered a repeated
	// Idempotency-Key with the first submission's job.
	Replayed bool `json:"replayed,omitempty"`
}

type job struct {
	JobID  string         `json:"job_id"`
	Status string         `json:"status"`
	Counts map[string]int `json:"counts"`
	Items  []staging      `json:"items"`
}

// serverError is an error answer of the gateway (or of something in front
// of it): the HTTP status and, when the body was the API's, its code.
type serverError struct {
	Status int
	apiError
}

func (e *serverError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("the server answered %d %s", e.Status, http.StatusText(e.Status))
	}
	return e.Code + ": " + e.Detail
}

// unreachableError says the server could not be reached at all.
type unreachableError struct {
	URL    string
	Reason string
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the staging server at %s: %s", e.URL, e.Reason)
}

// client talks to one gateway.
type client struct {
	base  *url.URL
	token string
	http  *http.Client
}

func newClient(server, token string) (*client, error) {
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usagef("--server %q is not an http:// or https:// URL", server)
	}
	// No overall timeout: event streams and downloads last as long as they
	// last. Connecting and the answer's headers are bounded instead.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 60 * time.Second
	return &client{base: u, token: token, http: &http.Client{Transport: tr}}, nil
}

// resolve turns an API path (or an absolute URL) into a URL on the server.
// A gateway published under a path (--server https://host/staging) serves
// its API paths below it.
func (c *client) resolve(ref string) string {
	u, err := url.Parse(ref)
	if err != nil {
		return c.base.String() + ref
	}
	if !u.IsAbs() && strings.HasPrefix(u.Path, "/") && c.base.Path != "" && !strings.HasPrefix(u.Path, c.base.Path+"/") {
		u.Path = c.base.Path + u.Path
	}
	return c.base.ResolveReference(u).String()
}

// do sends one request and returns the response if its status is 2xx (or
// one of also); any other status is read as a serverError.
func (c *client) do(ctx context.Context, method, ref string, body any, hdr http.Header, also ...int) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.resolve(ref), rd)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	// The token is the gateway's: a link to another host does not get it.
	if c.token != "" && req.URL.Host == c.base.Host {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &unreachableError{URL: c.base.String(), Reason: reason(err)}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	for _, s := range also {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

// readError reads an error answer. A body that is not the API's error JSON
// (a proxy's HTML page, say) leaves the code empty.
func readError(resp *http.Response) error {
	e := &serverError{Status: resp.StatusCode}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(data, &e.apiError) != nil || e.Code == "" {
		e.apiError = apiError{}
	}
	return e
}

// reason says in a few words why a connection failed, without the chain of
// Go errors around it.
func reason(err error) string {
	var dns *net.DNSError
	var nerr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (is the server running, and is --server right?)"
	case errors.As(err, &dns):
		return "unknown host " + dns.Name
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timed out"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the connection was closed"
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// getJSON reads ref into v.
func (c *client) getJSON(ctx context.Context, ref string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, ref, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decode(resp, v)
}

func decode(resp *http.Response, v any) error {
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return &serverError{Status: resp.StatusCode, apiError: apiError{
			Code: "malformed_response", Detail: "the server's answer is not the JSON the API documents",
		}}
	}
	return nil
}

func (c *client) staging(ctx context.Context, id string) (staging, error) {
	var s staging
	err := c.getJSON(ctx, "/api/v1/stagings/"+url.PathEscape(id), &s)
	return s, err
}

func (c *client) job(ctx context.Context, jobID string) (job, error) {
	var j job
	err := c.getJSON(ctx, "/api/v1/jobs/"+url.PathEscape(jobID), &j)
	return j, err
}

func (c *client) methods(ctx context.Context) ([]string, error) {
	var m struct {
		Methods []string `json:"allowed_methods"`
	}
	err := c.getJSON(ctx, "/api/v1/methods", &m)
	return m.Methods, err
}

// submit posts one item.
func (c *client) submit(ctx context.Context, it item) (submitted, error) {
	var s submitted
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/stagings", it, nil)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	return s, decode(resp, &s)
}

// submitJob posts a batch under an Idempotency-Key.
func (c *client) submitJob(ctx context.Context, items []item, key string) (jobSubmitted, error) {
	var j jobSubmitted
	hdr := http.Header{"Idempotency-Key": {key}}
	resp, err := c.do(ctx, http.MethodPost, "/api/v1/jobs", struct {
		Items []item `json:"items"`
	}{items}, hdr)
	if err != nil {
		return j, err
	}
	defer resp.Body.Close()
	j.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	return j, decode(resp, &j)
}

// list reads one page of the audit history.
func (c *client) list(ctx context.Context, q url.Values) (recordPage, error) {
	var p recordPage
	err := c.getJSON(ctx, "/api/v1/stagings?"+q.Encode(), &p)
	return p, err
}

// errNoCancel says the server has no cancel API.
var errNoCancel = errors.New("the server does not support cancel (it has no DELETE on requests or jobs); upgrade the gateway")

// cancel asks the server to cancel the request or job at ref (DELETE).
// A server without the cancel API answers 405 (the path exists for GET
// only) or a 404 naming no endpoint: that is errNoCancel, not a missing
// request.
func (c *client) cancel(ctx context.Context, ref string) (staging, error) {
	resp, err := c.do(ctx, http.MethodDelete, ref, nil, nil)
	var se *serverError
	if errors.As(err, &se) {
		if se.Status == http.StatusMethodNotAllowed ||
			(se.Status == http.StatusNotFound && (se.Code == "" || strings.HasPrefix(se.Detail, "no endpoint"))) {
			return staging{}, errNoCancel
		}
	}
	if err != nil {
		return staging{}, err
	}
	defer resp.Body.Close()
	var s staging
	// The answer's body is informative; an empty one (204) is fine too.
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s, nil
}

// apiDocHasField reports whether the server's OpenAPI document names a
// field of the submission body; ok is false when the document could not be
// read.
func (c *client) apiDocHasField(ctx context.Context, field string) (has, ok bool) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if c.getJSON(ctx, "/openapi.json", &doc) != nil {
		return false, false
	}
	_, has = doc.Components.Schemas["SubmitRequest"].Properties[field]
	return has, true
}

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
// (queued, started, progress, ... ) or, for a request whose events aged
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
	case "started", "progress":
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
