package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// The shapes below are the gateway's documented JSON (openapi.json), kept
// here rather than imported: the client depends on the API, not on the
// server's code, and installs on its own with go install.

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
