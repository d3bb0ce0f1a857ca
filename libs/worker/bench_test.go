package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/cputime"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/worker"
)

// BenchmarkCommands measures the worker's own cost per command, the work
// left out: a backlog of b.N fresh commands goes through a worker whose
// Stage does nothing, 32 at a time, on an embedded server in the same
// process. cpu-us/cmd is the process's CPU time (server, client and
// worker) from the worker's start until the last succeeded event, per
// command. Compare trees alternately, e.g. with -benchtime 5000x.
func BenchmarkCommands(b *testing.B) {
	nc, js := natstest.JetStream(b)
	publishBacklog(b, js, b.N)
	all := awaitSucceeded(b, nc, b.N)
	w, err := worker.New(worker.Options{
		Source:  "bench",
		Methods: contract.MethodSet{contract.MethodLocalCopy},
		Stage: func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
			return worker.Result{Outcome: contract.OutcomeStaged}, nil
		},
		JS: js, Log: quiet, Registerer: prometheus.NewRegistry(), MetricPrefix: "bench",
		Durable: "bench", Concurrency: 32, AckWait: 30 * time.Second, MaxDeliver: 5,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()

	b.ResetTimer()
	cpu := cputime.Own(b)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("not all %d commands succeeded within 5 minutes", b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64((cputime.Own(b)-cpu).Microseconds())/float64(b.N), "cpu-us/cmd")
}

// BenchmarkReplicas measures what replicas add when the work's latency,
// not the CPU, bounds it: 1, 2 and 4 workers of concurrency 8, each on a
// connection of its own as separate processes would be, share the consumer
// and take a backlog of b.N commands whose work waits 20 ms (a storage that
// answers each read late) and does nothing else. req/s should grow with the
// replicas, up to what the server and this machine's CPUs carry.
func BenchmarkReplicas(b *testing.B) {
	for _, replicas := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			url := natstest.Start(b)
			nc, js := natstest.Connect(b, url)
			publishBacklog(b, js, b.N)
			all := awaitSucceeded(b, nc, b.N)
			ctx, cancel := context.WithCancel(b.Context())
			var running sync.WaitGroup
			defer func() {
				cancel()
				running.Wait()
			}()
			b.ResetTimer()
			for i := range replicas {
				_, wjs := natstest.Connect(b, url)
				w, err := worker.New(worker.Options{
					Source:  "bench",
					Methods: contract.MethodSet{contract.MethodLocalCopy},
					Stage: func(ctx context.Context, _ contract.Command, _ *worker.Reporter) (worker.Result, error) {
						time.Sleep(20 * time.Millisecond)
						return worker.Result{Outcome: contract.OutcomeStaged}, nil
					},
					JS: wjs, Log: quiet, Registerer: prometheus.NewRegistry(), MetricPrefix: "bench",
					Durable: "bench", Concurrency: 8, AckWait: 30 * time.Second, MaxDeliver: 5,
				})
				if err != nil {
					b.Fatalf("replica %d: %v", i, err)
				}
				running.Go(func() {
					if err := w.Run(ctx); err != nil {
						b.Error(err)
					}
				})
			}
			select {
			case <-all:
			case <-time.After(5 * time.Minute):
				b.Fatalf("not all %d commands succeeded within 5 minutes", b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// publishBacklog stores n fresh local_copy commands on STAGING_REQUESTS.
func publishBacklog(b *testing.B, js jetstream.JetStream, n int) {
	b.Helper()
	msgs := make([]*nats.Msg, 0, n)
	for range n {
		cmd := command(contract.MethodLocalCopy)
		data, err := json.Marshal(cmd)
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(contract.RequestSubject(cmd.Method))
		m.Data = data
		m.Header.Set(nats.MsgIdHdr, cmd.ID)
		msgs = append(msgs, m)
	}
	natstest.PublishAll(b, js, msgs)
}

// awaitSucceeded returns a channel closed once n succeeded events have been
// published.
func awaitSucceeded(b *testing.B, nc *nats.Conn, n int) <-chan struct{} {
	b.Helper()
	var succeeded atomic.Int64
	all := make(chan struct{})
	sub, err := nc.Subscribe(contract.SubjectEventsAll, func(m *nats.Msg) {
		var ev struct {
			Type contract.EventType `json:"type"`
		}
		if json.Unmarshal(m.Data, &ev) == nil && ev.Type == contract.EventSucceeded && succeeded.Add(1) == int64(n) {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sub.Unsubscribe() })
	return all
}
