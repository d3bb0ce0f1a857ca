package live_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/services/gateway/internal/live"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// fixture is the live handler behind a real HTTP server, over a real
// embedded JetStream server.
type fixture struct {
	url string
	js  jetstream.JetStream
	// served receives once per finished handler call.
	served chan string
}

func newFixture(t *testing.T, cfg live.Config) *fixture {
	t.Helper()
	nc, js := natstest.JetStream(t)
	// The audit's answer for requests it does not know (the real audit is
	// another service).
	sub, err := nc.Subscribe(contract.SubjectAuditGet, func(m *nats.Msg) {
		_ = m.Respond([]byte(`{"error":{"code":"not_found","detail":"no such request"}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	cfg.JS = js
	cfg.Client = stagings.New(nc, js, contract.MethodSet(contract.Methods), 2*time.Second)
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.WriteError = func(w http.ResponseWriter, _ *http.Request, err error) {
		e := contract.AsError(err)
		status := map[contract.Code]int{
			contract.CodeNotFound: 404, contract.CodeInvalidID: 400, contract.CodeMalformed: 400,
			contract.CodeInvalidUsername: 400, contract.CodeForbidden: 403,
		}[e.Code]
		w.Header().Set("Content-Type", "application/json")
		if status == 0 {
			status = http.StatusInternalServerError
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(e)
	}
	h, err := live.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{js: js, served: make(chan string, 16)}
	r := mux.NewRouter()
	r.HandleFunc("/api/v1/stagings/{id}/events", h.ServeRequest)
	r.HandleFunc("/api/v1/events", h.ServeAll)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.ServeHTTP(w, req)
		f.served <- req.URL.Path
	}))
	t.Cleanup(ts.Close)
	f.url = ts.URL
	return f
}

// publish publishes an event of type typ for request id of user and
// returns its stream sequence.
func (f *fixture) publish(t *testing.T, id, user string, typ contract.EventType) uint64 {
	t.Helper()
	ev := contract.Event{
		SpecVersion: contract.SpecVersion, ID: id + "-" + string(typ) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		Type: typ, Time: time.Now().UTC(), Source: "stager", RequestID: id,
		Method: contract.MethodLocalCopy, Username: user, LocalPathOnStorage: "a", RelativePath: "b",
	}
	if typ == contract.EventFailed {
		ev.Error = contract.Errorf(contract.CodeNoSpace, "full")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := bus.PublishEvent(ctx, f.js, ev); err != nil {
		t.Fatal(err)
	}
	s, err := f.js.Stream(ctx, contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, contract.EventSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	return msg.Sequence
}

// frame is one SSE frame; a comment has only Comment set.
type frame struct {
	ID, Event, Type, User, Comment string
}

// stream is an open SSE response read frame by frame.
type stream struct {
	resp   *http.Response
	frames chan frame
	cancel context.CancelFunc
}

func (f *fixture) open(t *testing.T, path string, header http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	s := &stream{resp: resp, frames: make(chan frame, 64), cancel: cancel}
	if resp.StatusCode != http.StatusOK {
		close(s.frames)
		return s
	}
	go func() {
		defer close(s.frames)
		sc := bufio.NewScanner(resp.Body)
		var fr frame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if fr != (frame{}) {
					s.frames <- fr
				}
				fr = frame{}
			case strings.HasPrefix(line, ": "):
				fr.Comment = strings.TrimPrefix(line, ": ")
			case strings.HasPrefix(line, "id: "):
				fr.ID = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				fr.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var ev struct {
					Type     string `json:"type"`
					Status   string `json:"status"`
					Username string `json:"username"`
				}
				if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev); err != nil {
					fr.Type = "BAD JSON: " + line
				} else {
					fr.Type, fr.User = ev.Type+ev.Status, ev.Username
				}
			}
		}
	}()
	return s
}

// next returns the next event frame (skipping comments unless comments),
// or fails the test after a deadline; ok is false at the end of the stream.
func (s *stream) next(t *testing.T, comments bool) (frame, bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case fr, ok := <-s.frames:
			if !ok {
				return frame{}, false
			}
			if fr.Comment != "" && !comments {
				continue
			}
			return fr, true
		case <-deadline:
			t.Fatal("no SSE frame within 5s")
		}
	}
}

// take reads n event frames.
func (s *stream) take(t *testing.T, n int) []frame {
	t.Helper()
	var got []frame
	for range n {
		fr, ok := s.next(t, false)
		if !ok {
			t.Fatalf("stream ended after %v, want %d events", got, n)
		}
		got = append(got, fr)
	}
	return got
}

func seq(n uint64) string { return strconv.FormatUint(n, 10) }

func TestRequestStreamFromStartUntilTerminal(t *testing.T) {
	f := newFixture(t, live.Config{})
	q := f.publish(t, "req1", "alice", contract.EventQueued)
	f.publish(t, "req2", "alice", contract.EventQueued) // another request: not streamed
	s1 := f.publish(t, "req1", "alice", contract.EventStarted)

	st := f.open(t, "/api/v1/stagings/req1/events", nil)
	if st.resp.StatusCode != 200 || !strings.HasPrefix(st.resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", st.resp.StatusCode, st.resp.Header.Get("Content-Type"))
	}
	got := st.take(t, 2)
	// Live from here: published after the client connected.
	p := f.publish(t, "req1", "alice", contract.EventProgress)
	done := f.publish(t, "req1", "alice", contract.EventSucceeded)
	got = append(got, st.take(t, 2)...)
	want := []frame{
		{ID: seq(q), Event: "queued", Type: "queued", User: "alice"},
		{ID: seq(s1), Event: "started", Type: "started", User: "alice"},
		{ID: seq(p), Event: "progress", Type: "progress", User: "alice"},
		{ID: seq(done), Event: "succeeded", Type: "succeeded", User: "alice"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if fr, ok := st.next(t, false); ok {
		t.Errorf("after the terminal event got %+v, want the end of the stream", fr)
	}

	// Resume after the started event: only what came after it.
	st = f.open(t, "/api/v1/stagings/req1/events", http.Header{"Last-Event-Id": {seq(s1)}})
	got = st.take(t, 2)
	if diff := cmp.Diff(got, want[2:]); diff != "" {
		t.Errorf("resumed events (-got +want):\n%s", diff)
	}
	if fr, ok := st.next(t, false); ok {
		t.Errorf("after the terminal event got %+v, want the end", fr)
	}
}

func TestAllEventsLiveFilteredAndResumable(t *testing.T) {
	f := newFixture(t, live.Config{})
	f.publish(t, "old", "alice", contract.EventQueued) // before: not streamed

	st := f.open(t, "/api/v1/events?username=alice", nil)
	if st.resp.StatusCode != 200 {
		t.Fatalf("status %d", st.resp.StatusCode)
	}
	// The consumer exists once the stream's first bytes arrived; read the
	// retry preamble by waiting for the first event below.
	a1 := f.publish(t, "a1", "alice", contract.EventQueued)
	f.publish(t, "b1", "bob", contract.EventQueued)
	a2 := f.publish(t, "a1", "alice", contract.EventFailed)
	f.publish(t, "b1", "bob", contract.EventSucceeded)
	a3 := f.publish(t, "a3", "alice", contract.EventQueued)
	got := st.take(t, 3)
	want := []frame{
		{ID: seq(a1), Event: "queued", Type: "queued", User: "alice"},
		{ID: seq(a2), Event: "failed", Type: "failed", User: "alice"},
		{ID: seq(a3), Event: "queued", Type: "queued", User: "alice"},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("alice's events (-got +want):\n%s", diff)
	}

	// Reconnect after the first: everything since, bob's included without
	// the filter.
	st.cancel()
	st = f.open(t, "/api/v1/events", http.Header{"Last-Event-Id": {seq(a1)}})
	got = st.take(t, 4)
	var ids []string
	for _, fr := range got {
		ids = append(ids, fr.User+":"+fr.Event)
	}
	if diff := cmp.Diff(ids, []string{"bob:queued", "alice:failed", "bob:succeeded", "alice:queued"}); diff != "" {
		t.Errorf("resumed events (-got +want):\n%s", diff)
	}
}

func TestHeartbeatAndClientDisconnect(t *testing.T) {
	f := newFixture(t, live.Config{Heartbeat: 20 * time.Millisecond})
	st := f.open(t, "/api/v1/events", nil)
	fr, ok := st.next(t, true)
	if !ok || fr.Comment != "heartbeat" {
		t.Fatalf("first frame %+v, %v; want a heartbeat comment", fr, ok)
	}
	st.cancel()
	select {
	case path := <-f.served:
		if path != "/api/v1/events" {
			t.Errorf("finished %s", path)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not stop after the client left")
	}
}

func TestRefusals(t *testing.T) {
	onlyAlice := func(r *http.Request) (func(string) bool, error) {
		if r.Header.Get("X-Who") == "nobody" {
			return nil, contract.Errorf(contract.CodeForbidden, "no")
		}
		return func(u string) bool { return u == "alice" }, nil
	}
	f := newFixture(t, live.Config{Visible: onlyAlice})
	f.publish(t, "bobs", "bob", contract.EventQueued)
	f.publish(t, "alices", "alice", contract.EventQueued)
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   int
		code   contract.Code
	}{
		{"unknown request", "/api/v1/stagings/nope/events", nil, 404, contract.CodeNotFound},
		{"another user's request", "/api/v1/stagings/bobs/events", nil, 404, contract.CodeNotFound},
		{"bad id", "/api/v1/stagings/a.b/events", nil, 400, contract.CodeInvalidID},
		{"bad Last-Event-ID", "/api/v1/stagings/alices/events", http.Header{"Last-Event-Id": {"x"}}, 400, contract.CodeMalformed},
		{"bad username filter", "/api/v1/events?username=Bad!", nil, 400, contract.CodeInvalidUsername},
		{"refused caller", "/api/v1/events", http.Header{"X-Who": {"nobody"}}, 403, contract.CodeForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := f.open(t, tt.path, tt.header)
			var e contract.Error
			if err := json.NewDecoder(st.resp.Body).Decode(&e); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if st.resp.StatusCode != tt.want || e.Code != tt.code {
				t.Errorf("got %d %s, want %d %s", st.resp.StatusCode, e.Code, tt.want, tt.code)
			}
		})
	}
}
