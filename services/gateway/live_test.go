package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/services/gateway"
)

// liveGateway is a whole gateway (auth off) over an embedded JetStream
// server behind a real HTTP server, with the test's own connection.
type liveGateway struct {
	url string
	nc  *nats.Conn
	js  jetstream.JetStream
}

func newLiveGateway(t *testing.T, cfg gateway.Config) *liveGateway {
	t.Helper()
	url := natstest.Start(t)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	gwNC, err := bus.Connect(url, "gateway-live-test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gwNC.Close)
	gwJS, err := jetstream.New(gwNC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, gwJS, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	h, err := gateway.NewHandler(cfg, service.Deps{
		Log: log, NC: gwNC, JS: gwJS, Registerer: prometheus.NewRegistry(), Health: telemetry.NewHealth(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The window's subscription is in place once the gateway's connection
	// has flushed it.
	if err := gwNC.Flush(); err != nil {
		t.Fatal(err)
	}
	return &liveGateway{url: ts.URL, nc: nc, js: js}
}

func (g *liveGateway) get(t *testing.T, path string, v any) (int, http.Header) {
	t.Helper()
	resp, err := http.Get(g.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode, resp.Header
}

func TestLogsShowsPublishedRecordsBounded(t *testing.T) {
	g := newLiveGateway(t, gateway.Config{LogWindowLines: 3})
	pub := telemetry.NewLogPublisher("stager", 0)
	log, closer, err := telemetry.NewLogger(pub, telemetry.LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	pub.Attach(g.nc)
	defer pub.Close()
	for i := range 5 {
		log.Info("copy_done", "n", i, "service", "stager")
	}

	var msgs []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		var body struct {
			Lines []string `json:"lines"`
		}
		if status, _ := g.get(t, "/logs/", &body); status != 200 {
			t.Fatalf("GET /logs/: %d", status)
		}
		msgs = msgs[:0]
		for _, l := range body.Lines {
			var rec struct {
				Msg     string `json:"msg"`
				N       int    `json:"n"`
				Service string `json:"service"`
			}
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			msgs = append(msgs, fmt.Sprintf("%s %s %d", rec.Service, rec.Msg, rec.N))
		}
		if len(msgs) == 3 && strings.HasSuffix(msgs[2], " 4") || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	want := []string{"stager copy_done 2", "stager copy_done 3", "stager copy_done 4"}
	if diff := cmp.Diff(msgs, want); diff != "" {
		t.Errorf("/logs/ (-got +want):\n%s", diff)
	}

	var limited struct {
		Lines []string `json:"lines"`
	}
	if status, _ := g.get(t, "/logs?limit=1", &limited); status != 200 || len(limited.Lines) != 1 {
		t.Errorf("GET /logs?limit=1: %d, %d lines; want 200, 1", status, len(limited.Lines))
	}
	var e struct {
		Code contract.Code `json:"code"`
	}
	if status, _ := g.get(t, "/logs/?limit=0", &e); status != 400 || e.Code != contract.CodeMalformed {
		t.Errorf("GET /logs/?limit=0: %d %s; want 400 malformed", status, e.Code)
	}
}

func TestStagingEventsThroughGateway(t *testing.T) {
	g := newLiveGateway(t, gateway.Config{})
	resp, err := http.Post(g.url+"/api/v1/stagings", "application/json", strings.NewReader(
		`{"method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	var sub struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&sub); err != nil || resp.StatusCode != 202 {
		t.Fatalf("submit: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url+"/api/v1/stagings/"+sub.ID+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if stream.StatusCode != 200 {
		t.Fatalf("events: %d", stream.StatusCode)
	}
	// A worker's events, published by the test.
	for _, typ := range []contract.EventType{contract.EventStarted, contract.EventSucceeded} {
		ev := contract.Event{
			SpecVersion: contract.SpecVersion, ID: sub.ID + string(typ), Type: typ, Time: time.Now().UTC(),
			Source: "stager", RequestID: sub.ID, Method: contract.MethodLocalCopy, Username: "alice",
			LocalPathOnStorage: "a", RelativePath: "b", Outcome: contract.OutcomeStaged,
		}
		if err := bus.PublishEvent(ctx, g.js, ev); err != nil {
			t.Fatal(err)
		}
	}
	// The stream ends by itself after succeeded: read it to the end.
	var events []string
	sc := bufio.NewScanner(stream.Body)
	for sc.Scan() {
		if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream: %v (events so far %v)", err, events)
	}
	if diff := cmp.Diff(events, []string{"queued", "started", "succeeded"}); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

func TestUIServed(t *testing.T) {
	g := newLiveGateway(t, gateway.Config{})
	tests := []struct {
		path        string
		status      int
		contentType string
		contains    string
	}{
		{"/", 200, "text/html", `<label for="method">Method</label>`},
		{"/ui/app.js", 200, "text/javascript", "EventSource"},
		{"/ui/style.css", 200, "text/css", "#logs"},
		{"/ui/missing.js", 404, "text/plain", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(g.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			ct := resp.Header.Get("Content-Type")
			if resp.StatusCode != tt.status || !strings.HasPrefix(ct, tt.contentType) || !strings.Contains(string(body), tt.contains) {
				t.Errorf("GET %s: %d %q (%d bytes); want %d %q containing %q", tt.path, resp.StatusCode, ct, len(body), tt.status, tt.contentType, tt.contains)
			}
			if tt.status == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("GET %s: no same-origin Content-Security-Policy", tt.path)
			}
		})
	}
}
