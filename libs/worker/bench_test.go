package worker_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
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
	msgs := make([]*nats.Msg, 0, b.N)
	for range b.N {
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

	var succeeded atomic.Int64
	all := make(chan struct{})
	sub, err := nc.Subscribe(contract.SubjectEventsAll, func(m *nats.Msg) {
		var ev struct {
			Type contract.EventType `json:"type"`
		}
		if json.Unmarshal(m.Data, &ev) == nil && ev.Type == contract.EventSucceeded && succeeded.Add(1) == int64(b.N) {
			close(all)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
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
	cpu := testenv.OwnCPU(b)
	go func() { done <- w.Run(ctx) }()
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d commands succeeded within 5 minutes", succeeded.Load(), b.N)
	}
	b.StopTimer()
	b.ReportMetric(float64((testenv.OwnCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-us/cmd")
}
