package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
)

// logLines is the answer of /logs/.
type logLines struct {
	Lines []string `json:"lines"`
}

func TestLogsShowsPublishedRecordsBounded(t *testing.T) {
	e := newEnv(t, gateway.Config{LogWindowLines: 3})
	pub := telemetry.NewLogPublisher("stager", 0)
	log, closer, err := telemetry.NewLogger(pub, telemetry.LogConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	pub.Attach(e.nc)
	defer pub.Close()
	for i := range 5 {
		log.Info("copy_done", "n", i, "service", "stager")
	}

	var msgs []string
	testenv.Eventually(t, 5*time.Second, "the newest three records on /logs/", func() bool {
		r := e.do(http.MethodGet, "/logs/", "")
		if r.status != 200 {
			t.Fatalf("GET /logs/: %d", r.status)
		}
		body := decode[logLines](t, r)
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
		return len(msgs) == 3 && strings.HasSuffix(msgs[2], " 4")
	})
	want := []string{"stager copy_done 2", "stager copy_done 3", "stager copy_done 4"}
	if diff := cmp.Diff(msgs, want); diff != "" {
		t.Errorf("/logs/ (-got +want):\n%s", diff)
	}

	r := e.do(http.MethodGet, "/logs?limit=1", "")
	if limited := decode[logLines](t, r); r.status != 200 || len(limited.Lines) != 1 {
		t.Errorf("GET /logs?limit=1: %d, %d lines; want 200, 1", r.status, len(limited.Lines))
	}
	r = e.do(http.MethodGet, "/logs/?limit=0", "")
	if refusal := decode[contract.Error](t, r); r.status != 400 || refusal.Code != contract.CodeMalformed {
		t.Errorf("GET /logs/?limit=0: %d %s; want 400 malformed", r.status, refusal.Code)
	}
}

func TestStagingEventsThroughGateway(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	resp := e.do(http.MethodPost, "/api/v1/stagings", `{"method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"b"}`)
	if resp.status != 202 {
		t.Fatalf("submit: %d %s", resp.status, resp.body)
	}
	sub := decode[struct {
		ID string `json:"id"`
	}](t, resp)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/api/v1/stagings/"+sub.ID+"/events", nil)
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
		e.publishEvent(contract.Event{
			ID: sub.ID + string(typ), Type: typ, Source: "stager", RequestID: sub.ID, Method: contract.MethodLocalCopy,
			Username: "alice", LocalPathOnStorage: "a", RelativePath: "b", Outcome: contract.OutcomeStaged,
		})
	}
	// The stream ends by itself after succeeded: read it to the end.
	var events []string
	sc := bufio.NewScanner(stream.Body)
	for sc.Scan() {
		if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, ev)
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
	e := newEnv(t, gateway.Config{})
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
			r := e.do(http.MethodGet, tt.path, "")
			ct := r.header.Get("Content-Type")
			if r.status != tt.status || !strings.HasPrefix(ct, tt.contentType) || !strings.Contains(string(r.body), tt.contains) {
				t.Errorf("GET %s: %d %q (%d bytes); want %d %q containing %q", tt.path, r.status, ct, len(r.body), tt.status, tt.contentType, tt.contains)
			}
			if tt.status == 200 && !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") {
				t.Errorf("GET %s: no same-origin Content-Security-Policy", tt.path)
			}
		})
	}
}

// TestCloseEndsSubscriptions checks that closing the handler takes its
// subscriptions (the log window's, the outcome watches' shared one) off the
// gateway's connection.
func TestCloseEndsSubscriptions(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	e.startWorker(func(contract.Command) contract.Event {
		return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged}
	})
	// The seed API waits for the outcome through the shared subscription.
	if r := e.do(http.MethodPost, "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`); r.status != http.StatusOK {
		t.Fatalf("POST /stage_data: %d %s", r.status, r.body)
	}
	// Besides the two, the connection holds its request-reply inbox.
	serving := e.gwNC.NumSubscriptions()
	if err := e.handler.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, want := e.gwNC.NumSubscriptions(), serving-2; got != want {
		t.Errorf("%d subscriptions after Close, want %d (%d while serving, less the log window's and the watches')", got, want, serving)
	}
}
