package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/contract"
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
// A core NATS subscriber on the events' subjects collects the events; it
// adds one delivery per event to the server's work. Settings:
// STAGING_BENCH_BIN (a built stagingd; default: built here),
// STAGING_BENCH_REQUESTS (1500), STAGING_BENCH_OUT (also write the table),
// and STAGING_* variables for stagingd.
func TestLatencyBreakdown(t *testing.T) {
	if os.Getenv("STAGING_BENCH_BREAKDOWN") != "1" {
		t.Skip("benchmark: set STAGING_BENCH_BREAKDOWN=1 or run scripts/bench/latency.sh")
	}
	n := envInt(t, "STAGING_BENCH_REQUESTS", 1500)
	bin := benchBinary(t)
	const warmup = 200
	dir := t.TempDir()
	writeBenchFiles(t, filepath.Join(dir, "storage", "bench"), n+warmup)
	tg := startSubprocess(t, bin, dir)
	defer tg.stop()

	nc, err := nats.Connect(tg.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	made := map[string]map[contract.EventType]time.Time{} // by relative path
	sub, err := nc.Subscribe(contract.EventSubject("*"), func(m *nats.Msg) {
		var ev contract.Event
		if json.Unmarshal(m.Data, &ev) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if made[ev.RelativePath] == nil {
			made[ev.RelativePath] = map[contract.EventType]time.Time{}
		}
		made[ev.RelativePath][ev.Type] = ev.Time
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: time.Minute}
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
	// The events of the last request may still be on their way.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range all {
		ev := made[s.dst]
		q, st, done := ev[contract.EventQueued], ev[contract.EventStarted], ev[contract.EventSucceeded]
		if q.IsZero() || st.IsZero() || done.IsZero() {
			t.Fatalf("%s: events seen %v; want queued, started and succeeded", s.dst, ev)
		}
		for i, d := range []time.Duration{q.Sub(s.t0), st.Sub(q), done.Sub(st), s.t1.Sub(done), s.t1.Sub(s.t0)} {
			got[i] = append(got[i], d)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests at concurrency 1 after %d to warm up; load average %s\n\n", n, warmup, loadAverage())
	b.WriteString("| hop | p50 ms | p90 ms | p99 ms |\n|---|---|---|---|\n")
	for i, h := range hops {
		fmt.Fprintf(&b, "| %s | %.3f | %.3f | %.3f |\n", h, ms(percentile(got[i], 50)), ms(percentile(got[i], 90)), ms(percentile(got[i], 99)))
	}
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
