package worker_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/libs/worker"
)

// Two workers of concurrency C sharing the consumer, each on a connection
// of its own as two processes would be, hold 2×C commands at once: each is
// bounded by its own slots, not by a consumer-wide cap sized for one. And
// no command is handed out beyond the free slots: the consumer has exactly
// 2×C out while more wait in the stream.
func TestReplicasAddCapacity(t *testing.T) {
	const concurrency, extra = 3, 4
	url := natstest.Start(t)
	release := make(chan struct{})
	var mu sync.Mutex
	calls := map[string]int{}
	stage := func(ctx context.Context, cmd contract.Command, _ *worker.Reporter) (worker.Result, error) {
		mu.Lock()
		calls[cmd.ID]++
		mu.Unlock()
		<-release
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}
	var workers [2]*system
	for i := range workers {
		nc, js := natstest.Connect(t, url)
		workers[i] = startOn(t, nc, js, stage, func(o *worker.Options) { o.Concurrency = concurrency })
	}
	// Before the workers are stopped, even when the test fails early.
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll)
	var cmds []contract.Command
	for range 2*concurrency + extra {
		cmd := command(contract.MethodLocalCopy)
		cmds = append(cmds, cmd)
		workers[0].submit(t, cmd)
	}
	inFlight := func(s *system) float64 { return gauge(t, s.reg, "staging_test_in_flight") }
	testenv.Eventually(t, 15*time.Second, "both workers' slots all busy", func() bool {
		return inFlight(workers[0]) == concurrency && inFlight(workers[1]) == concurrency
	})
	cons, err := workers[0].js.Consumer(t.Context(), contract.StreamRequests, "test-worker")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 2*concurrency || info.NumPending != extra {
		t.Errorf("consumer has %d out and %d waiting, want %d out (the slots) and %d waiting", info.NumAckPending, info.NumPending, 2*concurrency, extra)
	}
	releaseAll()
	for _, cmd := range cmds {
		workers[0].events(t, cmd.ID)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, cmd := range cmds {
		if calls[cmd.ID] != 1 {
			t.Errorf("request %s worked on %d times, want 1", cmd.ID, calls[cmd.ID])
		}
	}
}

// gauge is the value of the unlabelled gauge name in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// series is the value of the counter name with exactly labels in reg, 0
// when there is none.
func series(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
