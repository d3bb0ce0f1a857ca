package gateway_test

// The gateway tests' one harness (NATS, a stand-in worker, an HTTP client
// with the checks every test makes); splitting it would scatter what each
// test file relies on.

// The one harness of the gateway's API tests: a whole gateway over a real
// embedded JetStream server, reached through a real HTTP server, with the
// test's own NATS connection to stand in for the services of other modules
// (the stager, the audit) and to read what the gateway published. Every
// response is checked against the OpenAPI document.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
	"github.com/skao/skao-staging/services/gateway/internal/api"
)

func TestMain(m *testing.M) {
	// The services install this propagator at start (telemetry); the tests
	// check that the trace travels from HTTP into NATS headers.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	os.Exit(m.Run())
}

// env is a gateway over a real embedded JetStream server, reached through
// a real HTTP server.
type env struct {
	t    *testing.T
	url  string
	srv  *server.Server
	nc   *nats.Conn // the test's own connection: worker, audit stand-in, reads
	js   jetstream.JetStream
	gwNC *nats.Conn
	deps service.Deps
	logs *testenv.Buffer
	// handler is the gateway's, closed by a cleanup.
	handler *gateway.Handler
}

func newEnv(t *testing.T, cfg gateway.Config, opts ...gateway.Option) *env {
	t.Helper()
	srv := natstest.StartServer(t, t.TempDir())
	logs := &testenv.Buffer{}
	deps := gatewayDeps(t, srv.ClientURL(), logs)
	nc, js := natstest.Connect(t, srv.ClientURL())
	// The gateway refuses a method no worker takes: the stand-in worker's
	// consumer is there from the start, idle until startWorker consumes
	// from it, so the commands wait in the queue for the test to read.
	if _, err := bus.EnsureConsumer(t.Context(), js, standInWorker); err != nil {
		t.Fatal(err)
	}
	h, err := gateway.NewHandler(cfg, deps, opts...)
	if err != nil {
		t.Fatal(err)
	}
	// After the HTTP server (cleanups run last first).
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	// The gateway's subscriptions (the log window's) are in place once its
	// connection has flushed them.
	if err := deps.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &env{t: t, url: ts.URL, srv: srv, nc: nc, js: js, gwNC: deps.NC, deps: deps, logs: logs, handler: h}
}

// newHandler builds a gateway over an embedded server of its own and
// returns what NewHandler returns, for the tests of its configuration and
// of its routes.
func newHandler(t *testing.T, cfg gateway.Config, opts ...gateway.Option) (http.Handler, error) {
	t.Helper()
	return gateway.NewHandler(cfg, gatewayDeps(t, natstest.Start(t), io.Discard), opts...)
}

// gatewayDeps are the gateway's dependencies over its own connection to the
// server at url, logging JSON to w.
func gatewayDeps(t *testing.T, url string, w io.Writer) service.Deps {
	t.Helper()
	nc, js := natstest.Connect(t, url)
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() {
		if err := tp.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return service.Deps{
		Log:        slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NC:         nc,
		JS:         js,
		Registerer: prometheus.NewRegistry(),
		Tracer:     tp,
		Health:     telemetry.NewHealth(),
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with header pairs and checks the answer against the
// OpenAPI document. It reports with Errorf, not Fatal: it also runs on
// goroutines of concurrent tests.
func (e *env) do(method, path, body string, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Errorf("%s %s: %v", method, path, err)
		return response{}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Errorf("%s %s: %v", method, path, err)
		return response{}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Errorf("%s %s: read body: %v", method, path, err)
	}
	r := response{status: resp.StatusCode, header: resp.Header, body: data}
	// Preflights are CORS's, not the API's: the document does not hold them.
	if method != http.MethodOptions {
		if err := validateResponse(method, path, r.status, r.header, r.body); err != nil {
			e.t.Errorf("contract: %v", err)
		}
	}
	return r
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	return decode[map[string]any](t, r)
}

// decode decodes r's body as a T, or fails the test.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("response is not a %T: %v\n%s", v, err, r.body)
	}
	return v
}

// answer stands in for the audit (another module; the end-to-end tests use
// the real one) on subject: each query, decoded as a Q, gets reply's
// answer as JSON. Unsubscribe to take the audit away; the test does when
// it ends.
func answer[Q, R any](e *env, subject string, reply func(query Q) R) *nats.Subscription {
	e.t.Helper()
	sub, err := e.nc.Subscribe(subject, func(m *nats.Msg) {
		var q Q
		if err := json.Unmarshal(m.Data, &q); err != nil {
			e.t.Errorf("audit stand-in on %s: query: %v", subject, err)
			return
		}
		data, err := json.Marshal(reply(q))
		if err == nil {
			err = m.Respond(data)
		}
		if err != nil {
			e.t.Errorf("audit stand-in on %s: %v", subject, err)
		}
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return sub
}

// stream returns the stream name, or fails the test.
func (e *env) stream(ctx context.Context, name string) jetstream.Stream {
	e.t.Helper()
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

// lastEvent reads the current state of request id from the event stream.
func (e *env) lastEvent(id string) (contract.Event, bool) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := e.stream(ctx, contract.StreamEvents).GetLastMsgForSubject(ctx, contract.EventSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return contract.Event{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	var ev contract.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		e.t.Fatal(err)
	}
	return ev, true
}

// commands returns every command waiting on the request stream, oldest
// first.
func (e *env) commands() []contract.Command {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s := e.stream(ctx, contract.StreamRequests)
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []contract.Command
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		msg, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue // consumed by a worker
		}
		var cmd contract.Command
		if err := json.Unmarshal(msg.Data, &cmd); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, cmd)
	}
	return out
}

// publishEvent publishes ev as a worker would, stamped with the spec
// version and, unless it has one, the time.
func (e *env) publishEvent(ev contract.Event) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ev.SpecVersion = contract.SpecVersion
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	if err := bus.PublishEvent(ctx, e.js, ev); err != nil {
		e.t.Fatal(err)
	}
}

// standInWorker is the consumer of the stand-in for the site's workers:
// every method's commands.
var standInWorker = bus.ConsumerOptions{
	Stream:         contract.StreamRequests,
	Durable:        "test-worker",
	FilterSubjects: contract.RequestSubjects(contract.Methods...),
	AckWait:        30 * time.Second,
	MaxDeliver:     3,
}

// startWorker consumes every command and answers it, after a started
// event, with an event about it of the type and outcome decide returns: a
// stand-in for the stager, which lives in another module.
func (e *env) startWorker(decide func(cmd contract.Command) contract.Event) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := bus.EnsureConsumer(ctx, e.js, standInWorker)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := bus.Consume(ctx, c, 4, func(ctx context.Context, msg jetstream.Msg) {
			cmd, err := contract.DecodeCommand(msg.Data())
			if err != nil {
				e.t.Errorf("worker got a bad command: %v", err)
				return
			}
			started := contract.EventFor(cmd, contract.EventStarted)
			started.ID, started.Time, started.Source = cmd.ID+"-started", time.Now().UTC(), "test-worker"
			if err := bus.PublishEvent(ctx, e.js, started); err != nil {
				e.t.Errorf("publish started: %v", err)
			}
			d := decide(cmd)
			ev := contract.EventFor(cmd, d.Type)
			ev.ID, ev.Time, ev.Source = cmd.ID+"-end", time.Now().UTC(), "test-worker"
			ev.Outcome, ev.Error, ev.Message, ev.DownloadURL, ev.Bytes, ev.Files = d.Outcome, d.Error, d.Message, d.DownloadURL, d.Bytes, d.Files
			if err := bus.PublishEvent(ctx, e.js, ev); err != nil {
				e.t.Errorf("publish outcome: %v", err)
			}
			if err := msg.Ack(); err != nil {
				e.t.Errorf("ack: %v", err)
			}
		})
		if err != nil {
			e.t.Errorf("consume: %v", err)
		}
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

// tokensFile writes a static tokens file (AUTH_TOKENS_FILE) holding
// content and returns its path.
func tokensFile(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

const validBody = `{"method":"local_copy","username":"alice","local_path_on_storage":"/mnt/storage_a/file.fits","relative_path":"data/file.fits"}`

// submitBody is a native submission of a local copy for user.
func submitBody(user string) string {
	return `{"method":"local_copy","username":"` + user + `","local_path_on_storage":"/mnt/a/f.fits","relative_path":"f.fits"}`
}

// item is a job item: a local copy of src to out/f for user.
func item(user, src string) string {
	return `{"method":"local_copy","username":"` + user + `","local_path_on_storage":"` + src + `","relative_path":"out/f"}`
}

// apiDoc is the OpenAPI document every response the tests get is checked
// against (with kin-openapi), so the document and the implementation
// cannot drift apart.
var apiDoc = sync.OnceValues(func() (routers.Router, error) {
	// Streams and pages are text: checked for their media type only.
	openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.PlainBodyDecoder)
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
	doc, err := api.LoadOpenAPI(context.Background())
	if err != nil {
		return nil, err
	}
	return gorillamux.NewRouter(doc)
})

// validateResponse checks a response to method path against the document:
// a documented operation must document the status, and the body must match
// the schema of its media type. Paths and operations the document does not
// hold (test routes, unknown paths, wrong methods) are not checked.
func validateResponse(method, path string, status int, header http.Header, body []byte) error {
	router, err := apiDoc()
	if err != nil {
		return fmt.Errorf("openapi.json: %w", err)
	}
	req, err := http.NewRequest(method, "http://gateway"+path, nil)
	if err != nil {
		return err
	}
	route, params, err := router.FindRoute(req)
	if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return fmt.Errorf("%s %s %d does not match openapi.json (%s): %w\n%s", method, path, status, route.Path, err, body)
	}
	return nil
}
