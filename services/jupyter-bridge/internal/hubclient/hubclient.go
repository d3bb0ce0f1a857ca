// Package hubclient talks to a JupyterHub: its REST API (users, starting a
// user's server and following the spawn progress stream) and, through the
// hub's proxy, the Jupyter Contents API of a user's server (existence
// checks, directories, binary-safe chunked uploads, renames, deletes).
//
// Every error that callers may act on carries a stable code (see the Code
// constants) in a *contract.Error in its chain. The token is sent only in
// the Authorization header, so it never appears in a URL, an error or a log.
package hubclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/telemetry"
)

// Short names for the contract's jupyter_copy error codes.
const (
	CodeUserNotFound = contract.CodeJupyterUserNotFound
	CodeForbidden    = contract.CodeJupyterForbidden
	CodeSpawnFailed  = contract.CodeJupyterSpawnFailed
	CodeTimeout      = contract.CodeJupyterTimeout
	CodeBodyTooLarge = contract.CodeJupyterBodyTooLarge
	CodeUnavailable  = contract.CodeJupyterUnavailable
)

// ErrServerNotRunning reports that the user's server is not running (any
// more): the proxy redirected to the hub or the hub refused the request.
// Start the server and try again.
var ErrServerNotRunning = errors.New("jupyter server not running")

// ErrNotFound reports a Contents API path that does not exist.
var ErrNotFound = errors.New("no such file or directory")

// DefaultChunkSize is the raw size of one upload piece: its base64 JSON body
// (about 4/3 of it) stays far below jupyter_server's default 512 MiB body
// limit, and 8 to 32 MiB pieces give the best throughput.
const DefaultChunkSize = 16 << 20

// Observer is told of every HTTP call the client makes: the endpoint (a
// fixed name such as "get_user" or "contents_put"), the status code ("error"
// when there was no response) and how long it took.
type Observer func(endpoint, status string, d time.Duration)

// Options configures a Client.
type Options struct {
	// URL is the hub's public base URL (JUPYTERHUB_URL).
	URL string
	// Token is the API token (JUPYTERHUB_API_TOKEN).
	Token string
	// ChunkSize is the raw size of one upload piece (DefaultChunkSize).
	ChunkSize int64
	// HTTPClient makes the calls (a client without timeout by default: the
	// callers' contexts bound them). Redirects are never followed.
	HTTPClient *http.Client
	Observer   Observer
	// TracerProvider, when set, makes a client span of each call
	// (telemetry.TraceTransport) on the default HTTP client.
	TracerProvider trace.TracerProvider
}

// Client is a JupyterHub client. It is safe for concurrent use.
type Client struct {
	base      string // without trailing slash
	token     string
	chunkSize int64
	http      *http.Client
	observe   Observer
}

// New returns a client for the hub at o.URL.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("jupyterhub url: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("jupyterhub url %q: want http(s)://host[:port][/prefix]", o.URL)
	}
	if u.User != nil || u.RawQuery != "" {
		return nil, errors.New("jupyterhub url: must not hold credentials or a query")
	}
	if o.Token == "" {
		return nil, errors.New("jupyterhub api token is empty")
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	// Large write buffers: the default 4 KiB makes a syscall per 4 KiB of
	// upload body.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.WriteBufferSize, tr.ReadBufferSize = bodyBuffer, 64<<10
	hc := &http.Client{Transport: telemetry.TraceTransport(tr, o.TracerProvider)}
	if o.HTTPClient != nil {
		c := *o.HTTPClient
		hc = &c
	}
	// A redirect means the user's server is not running (the proxy sends
	// the request to the hub); following it would only hide that.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	obs := o.Observer
	if obs == nil {
		obs = func(string, string, time.Duration) {}
	}
	return &Client{
		base:      strings.TrimSuffix(u.String(), "/"),
		token:     o.Token,
		chunkSize: o.ChunkSize,
		http:      hc,
		observe:   obs,
	}, nil
}

// WithToken returns a client like c that authenticates with token.
func (c *Client) WithToken(token string) *Client {
	cc := *c
	cc.token = token
	return &cc
}

// ChunkSize is the raw size of one upload piece.
func (c *Client) ChunkSize() int64 { return c.chunkSize }

func (c *Client) hubURL(format string, user string) string {
	return c.base + fmt.Sprintf(format, url.PathEscape(user))
}

// contentsURL is {hub}/user/{name}/api/contents/{path}, each path segment
// percent-encoded.
func (c *Client) contentsURL(user, p string) string {
	segs := strings.Split(strings.Trim(p, "/"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return c.base + "/user/" + url.PathEscape(user) + "/api/contents/" + strings.Join(segs, "/")
}

// do sends req with the token and reports it to the observer. A transport
// failure comes back as an unavailable error.
func (c *Client) do(req *http.Request, endpoint string) (*http.Response, error) {
	req.Header.Set("Authorization", "token "+c.token)
	req = req.WithContext(telemetry.WithSpanName(req.Context(), "hub "+endpoint))
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(endpoint, "error", time.Since(start))
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, ctxErr)
		}
		return nil, fmt.Errorf("%w: %w", contract.Errorf(CodeUnavailable, "%s %s: %s", req.Method, req.URL.Path, transportReason(err)), err)
	}
	c.observe(endpoint, strconv.Itoa(resp.StatusCode), time.Since(start))
	return resp, nil
}

// transportReason is the cause of a transport error without the URL that
// *url.Error repeats.
func transportReason(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

func (c *Client) newRequest(ctx context.Context, method, u string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("build %s request: %w", method, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// call sends a JSON request (body may be nil) and returns the response with
// its body still open; the caller closes it.
func (c *Client) call(ctx context.Context, method, u, endpoint string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s body: %w", endpoint, err)
		}
		r = strings.NewReader(string(data))
	}
	req, err := c.newRequest(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	return c.do(req, endpoint)
}

// hubMessage is the "message" of a JSON error body, or a short excerpt of
// any other body. Bodies never hold the token: it travels only in a header.
func hubMessage(resp *http.Response) string {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &m) == nil && m.Message != "" {
		return m.Message
	}
	if strings.Contains(resp.Header.Get("Content-Type"), "html") {
		return http.StatusText(resp.StatusCode)
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		s = http.StatusText(resp.StatusCode)
	}
	return s
}

// drain reads what is left of a body so the connection can be reused.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// statusError turns an unexpected response into an error with a code.
func statusError(what string, resp *http.Response) error {
	msg := hubMessage(resp)
	switch {
	case resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized:
		// A bad token on the single-user server reads "'_xsrf' argument
		// missing": it is an authentication failure all the same.
		return contract.Errorf(CodeForbidden, "%s: the hub refused the token (%d %s)", what, resp.StatusCode, msg)
	case resp.StatusCode == http.StatusRequestEntityTooLarge:
		return contract.Errorf(CodeBodyTooLarge, "%s: request body too large (%s)", what, msg)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return contract.Errorf(CodeUnavailable, "%s: %d %s", what, resp.StatusCode, msg)
	}
	return contract.Errorf(contract.CodeInternal, "%s: unexpected %d %s", what, resp.StatusCode, msg)
}

// Retryable reports whether err may go away when the call is repeated: the
// hub or the server was unreachable or stopped.
func Retryable(err error) bool {
	if errors.Is(err, ErrServerNotRunning) {
		return true
	}
	e, ok := errors.AsType[*contract.Error](err)
	return ok && e.Code == CodeUnavailable
}
