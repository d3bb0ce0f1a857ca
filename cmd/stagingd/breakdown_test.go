package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
)

// TestLatencyBreakdown (STAGING_BENCH_BREAKDOWN=1, or
// scripts/bench/latency.sh) stages 4 KiB files through POST /stage_data one
// at a time on a fresh all-in-one and splits each request's time at the
// events it publishes, whose times the services set when they make them:
//
//	gateway in      the client sends     -> the gateway makes the queued event
//	to the worker   queued event made    -> the stager makes the started event
//	work            started event made   -> the stager makes the succeeded event
//	answer          succeeded event made -> the client has the answer
//
// The events are read from their stream after the last request, so that
// reading them adds nothing to the requests' way. A second all-in-one then
// takes the same requests with its spans exported to a collector in the
// test (spanBreakdown), for the steps inside the hops. Settings:
// STAGING_BENCH_BIN (a built stagingd; default: built here),
// STAGING_BENCH_REQUESTS (1500), STAGING_BENCH_OUT (also write the table),
// and STAGING_* variables for stagingd.
func TestLatencyBreakdown(t *testing.T) {
	if os.Getenv("STAGING_BENCH_BREAKDOWN") != "1" {
		t.Skip("benchmark: set STAGING_BENCH_BREAKDOWN=1 or run scripts/bench/latency.sh")
	}
	n := envInt(t, "STAGING_BENCH_REQUESTS", 1500, 10)
	bin := benchBinary(t)
	const warmup = 200
	dir := t.TempDir()
	writeBenchFiles(t, filepath.Join(dir, "storage", "bench"), n+warmup)
	tg := startSubprocess(t, bin, dir)
	defer tg.stop()

	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	stage := func(i int) (string, time.Time, time.Time) {
		dst := fmt.Sprintf("breakdown/%d.dat", i)
		t0 := time.Now()
		if err := stageSeed(client, tg.httpURL, "breakdown", fmt.Sprintf("bench/%d.dat", i), dst); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		return dst, t0, time.Now()
	}
	for i := range warmup {
		stage(i)
	}
	hops := []string{"gateway in", "to the worker", "work", "answer", "total"}
	got := make([][]time.Duration, len(hops))
	type sent struct {
		dst    string
		t0, t1 time.Time
	}
	var all []sent
	for i := range n {
		dst, t0, t1 := stage(warmup + i)
		all = append(all, sent{dst, t0, t1})
	}
	made := readEventTimes(t, tg.natsURL)
	// A request whose stager started before the gateway's queued event
	// was stored has no queued event (the stream refuses one after the
	// started): its first two hops are left out, as one.
	noQueued := 0
	for _, s := range all {
		ev := made[s.dst]
		q, st, done := ev[contract.EventQueued], ev[contract.EventStarted], ev[contract.EventSucceeded]
		if st.IsZero() || done.IsZero() {
			t.Fatalf("%s: events seen %v; want started and succeeded", s.dst, ev)
		}
		if q.IsZero() {
			noQueued++
		} else {
			got[0] = append(got[0], q.Sub(s.t0))
			got[1] = append(got[1], st.Sub(q))
		}
		got[2] = append(got[2], done.Sub(st))
		got[3] = append(got[3], s.t1.Sub(done))
		got[4] = append(got[4], s.t1.Sub(s.t0))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests at concurrency 1 after %d to warm up (%d without a queued event); load average %s\n\n", n, warmup, noQueued, loadAverage())
	b.WriteString("| hop | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|\n")
	for i, h := range hops {
		fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f |\n", h, ms(percentile(got[i], 50)), ms(percentile(got[i], 90)), ms(percentile(got[i], 99)))
	}
	b.WriteString("\n")
	b.WriteString(spanBreakdown(t, bin, n))
	t.Log("\n" + b.String())
	if out := os.Getenv("STAGING_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// readEventTimes reads every event of the stream STAGING_EVENTS and returns
// when each was made, by type, by the request's relative path.
func readEventTimes(t *testing.T, natsURL string) map[string]map[contract.EventType]time.Time {
	t.Helper()
	_, js := natstest.Connect(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, contract.StreamEvents, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	made := map[string]map[contract.EventType]time.Time{}
	for {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var ev contract.Event
		if err := json.Unmarshal(msg.Data(), &ev); err == nil {
			if made[ev.RelativePath] == nil {
				made[ev.RelativePath] = map[contract.EventType]time.Time{}
			}
			made[ev.RelativePath][ev.Type] = ev.Time
		}
		meta, err := msg.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if meta.NumPending == 0 {
			return made
		}
	}
}

// spanBreakdown stages n 4 KiB files at concurrency 1, after a warm-up, on
// a fresh all-in-one that exports its spans over OTLP/HTTP to a collector
// in this test, and returns a table of the spans' durations by name: the
// steps of a request's way as the services trace them. Exporting costs
// the all-in-one some CPU, so the hops are timed on a run without it.
func spanBreakdown(t *testing.T, bin string, n int) string {
	t.Helper()
	const warmup = 200
	type span struct {
		name  string
		start time.Time
		took  time.Duration
	}
	var mu sync.Mutex
	var spans []span
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					spans = append(spans, span{sp.Name, time.Unix(0, int64(sp.StartTimeUnixNano)), time.Duration(sp.EndTimeUnixNano - sp.StartTimeUnixNano)})
				}
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Write(out)
	}))
	defer collector.Close()

	dir := t.TempDir()
	writeBenchFiles(t, filepath.Join(dir, "storage", "bench"), n+warmup)
	tg := startSubprocess(t, bin, dir, "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_TRACES_EXPORTER=otlp")
	client := &http.Client{Timeout: time.Minute}
	stage := func(i int) {
		if err := stageSeed(client, tg.httpURL, "spans", fmt.Sprintf("bench/%d.dat", i), fmt.Sprintf("spans/%d.dat", i)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	for i := range warmup {
		stage(i)
	}
	measured := time.Now()
	for i := range n {
		stage(warmup + i)
	}
	tg.stop() // the exporter sends what it holds as the all-in-one stops

	mu.Lock()
	defer mu.Unlock()
	durations := map[string][]time.Duration{}
	for _, sp := range spans {
		if !sp.start.Before(measured) {
			durations[sp.name] = append(durations[sp.name], sp.took)
		}
	}
	names := slices.Sorted(maps.Keys(durations))
	var b strings.Builder
	fmt.Fprintf(&b, "spans of %d requests at concurrency 1 (an all-in-one exporting its spans)\n\n", n)
	b.WriteString("| span | count | p50 ms | p90 ms |\n|---|---|---|---|\n")
	for _, name := range names {
		d := durations[name]
		fmt.Fprintf(&b, "| %s | %d | %.3f | %.3f |\n", name, len(d), ms(percentile(d, 50)), ms(percentile(d, 90)))
	}
	return b.String()
}
