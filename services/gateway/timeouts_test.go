package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
)

// shortTimeouts bound the test servers' connections far below what the
// slow answers below take.
var shortTimeouts = service.HTTPTimeouts{Read: 300 * time.Millisecond, Write: 600 * time.Millisecond, Idle: 300 * time.Millisecond}

// serve serves the env's gateway as the service does, its connections
// bounded by timeouts, and returns its URL.
func (e *env) serve(timeouts service.HTTPTimeouts) string {
	e.t.Helper()
	return testenv.ServeHTTP(e.t, e.handler, timeouts)
}

// The seed's answer, given after a wait longer than the write timeout, still
// reaches its client.
func TestSeedAnswerOutlastsWriteTimeout(t *testing.T) {
	e := newEnv(t, gateway.Config{StageWaitTimeout: 10 * time.Second})
	url := e.serve(shortTimeouts)
	e.startWorker(func(contract.Command) contract.Event {
		// A staging that takes longer than the write timeout.
		<-time.After(2 * shortTimeouts.Write)
		return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged}
	})
	resp, err := http.Post(url+"/stage_data?method=local_copy&username=alice", "application/json",
		strings.NewReader(`{"local_path_on_storage":"a","relative_path":"b"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"success"`) {
		t.Fatalf("answer = %d %s (%v), want 200 success", resp.StatusCode, body, err)
	}
}

// A download proxied to a client reading slowly lasts as long as the client
// keeps reading, beyond the write timeout.
func TestProxiedDownloadToSlowReader(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), (4<<20)/16)
	stager := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "big.ms", time.Time{}, bytes.NewReader(content))
	}))
	t.Cleanup(stager.Close)
	e := newEnv(t, gateway.Config{StagerDownloadURL: stager.URL})
	url := e.serve(shortTimeouts)
	resp, err := testenv.SlowClient().Get(url + "/api/v1/downloads/tok123")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// 128 KiB every 40 ms: about 1.3 s for the whole body.
	got, err := testenv.ReadSlowly(resp.Body, 128<<10, 40*time.Millisecond)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("read %d of %d bytes: %v", len(got), len(content), err)
	}
}

// An event stream stays open, past the read and write timeouts, while its
// events come slowly.
func TestEventStreamOutlastsTimeouts(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	url := e.serve(shortTimeouts)
	resp := e.do(http.MethodPost, "/api/v1/stagings", submitBody("alice"))
	if resp.status != http.StatusAccepted {
		t.Fatalf("submit: %d %s", resp.status, resp.body)
	}
	id := decode[struct {
		ID string `json:"id"`
	}](t, resp).ID

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/stagings/"+id+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	sc := bufio.NewScanner(stream.Body)
	// next reads the stream up to its next event and returns its type.
	next := func() string {
		for sc.Scan() {
			if typ, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				return typ
			}
		}
		t.Fatalf("the stream ended: %v", sc.Err())
		return ""
	}
	got := []string{next()}
	// A progress event every 100 ms for three write timeouts, each one
	// published once the previous one has arrived.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	steps := int(3 * shortTimeouts.Write / (100 * time.Millisecond))
	for i := range steps {
		<-tick.C
		typ := contract.EventProgress
		if i == steps-1 {
			typ = contract.EventSucceeded
		}
		e.publishEvent(contract.Event{
			ID: fmt.Sprintf("%s-%d", id, i), Type: typ, Source: "stager", RequestID: id, Method: contract.MethodLocalCopy,
			Username: "alice", LocalPathOnStorage: "/mnt/a/f.fits", RelativePath: "f.fits", Outcome: contract.OutcomeStaged, Bytes: int64(i),
		})
		got = append(got, next())
	}
	want := []string{"queued"}
	for range steps - 1 {
		want = append(want, "progress")
	}
	want = append(want, "succeeded")
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}
