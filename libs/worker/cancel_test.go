package worker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/libs/worker"
)

// cancelRequest asks for request id to be cancelled by who.
func cancelRequest(t *testing.T, js jetstream.JetStream, id, who string) {
	t.Helper()
	c := contract.CancelRequest{SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Time: time.Now().UTC(), RequestID: id, CancelledBy: who, Origin: "test"}
	if err := bus.PublishCancel(t.Context(), js, c); err != nil {
		t.Fatal(err)
	}
}

// queued publishes the queued event of cmd, as the gateway does before
// the command.
func queued(t *testing.T, js jetstream.JetStream, cmd contract.Command) {
	t.Helper()
	ev := contract.EventFor(cmd, contract.EventQueued)
	ev.ID, ev.Time, ev.Source = uuid.NewString(), time.Now().UTC(), "gateway"
	if err := bus.PublishEvent(t.Context(), js, ev); err != nil {
		t.Fatal(err)
	}
}

// lastType is the type of request id's last event, "" before any.
func lastType(t *testing.T, js jetstream.JetStream, id string) contract.EventType {
	t.Helper()
	s, err := js.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(t.Context(), contract.EventSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	ev, err := contract.DecodeEvent(raw.Subject, raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Type
}

// A queued request is cancelled at once, while every worker is busy, and
// its command, taken later, is never started.
func TestCancelQueued(t *testing.T) {
	release := make(chan struct{})
	var ran atomic.Int32
	s := start(t, func(ctx context.Context, cmd contract.Command, _ *worker.Reporter) (worker.Result, error) {
		ran.Add(1)
		if cmd.RelativePath == "busy" {
			<-release
		}
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}, func(o *worker.Options) { o.Concurrency = 1 })
	busy := command(contract.MethodLocalCopy)
	busy.RelativePath = "busy"
	s.submit(t, busy)
	testenv.Eventually(t, 15*time.Second, "the busy command to start", func() bool { return ran.Load() == 1 })

	cmd := command(contract.MethodLocalCopy)
	queued(t, s.js, cmd)
	s.submit(t, cmd)
	cancelRequest(t, s.js, cmd.ID, "alice")
	testenv.Eventually(t, 15*time.Second, "the queued request to end cancelled", func() bool { return lastType(t, s.js, cmd.ID) == contract.EventCancelled })
	close(release)

	evs := s.events(t, cmd.ID)
	checkEventTypes(t, evs, []contract.EventType{contract.EventQueued, contract.EventCancelled})
	if got := evs[1]; got.CancelledBy != "alice" || got.Error == nil || got.Error.Code != contract.CodeCancelled || got.RelativePath != cmd.RelativePath {
		t.Errorf("cancelled event %+v, want cancelled_by alice, code cancelled and the request's fields", got)
	}
	s.events(t, busy.ID)
	if got := ran.Load(); got != 1 {
		t.Errorf("work ran %d times, want 1 (the busy command only)", got)
	}
	if got := counter(t, s.reg, "staging_test_requests_total", "local_copy", "cancelled"); got != 1 {
		t.Errorf("requests_total{outcome=cancelled} = %v, want 1", got)
	}
}

// A running request stops within about a second of its cancel: its
// StageFunc's context is cancelled, and the request ends cancelled, not
// failed, whatever the StageFunc returned.
func TestCancelRunning(t *testing.T) {
	started := make(chan struct{})
	s := start(t, func(ctx context.Context, cmd contract.Command, _ *worker.Reporter) (worker.Result, error) {
		close(started)
		<-ctx.Done()
		return worker.Result{}, contract.Errorf(contract.CodeIOError, "copy: %v", ctx.Err())
	}, nil)
	cmd := command(contract.MethodLocalCopy)
	s.submit(t, cmd)
	<-started
	asked := time.Now()
	cancelRequest(t, s.js, cmd.ID, "bob")
	testenv.Eventually(t, 15*time.Second, "the running request to end", func() bool { return lastType(t, s.js, cmd.ID).Terminal() })
	if took := time.Since(asked); took > 2*time.Second {
		t.Errorf("the request ended %s after its cancel, want about a second at most", took)
	}
	evs := s.events(t, cmd.ID)
	checkEventTypes(t, evs, []contract.EventType{contract.EventStarted, contract.EventCancelled})
	if got := evs[1].CancelledBy; got != "bob" {
		t.Errorf("cancelled_by %q, want bob", got)
	}
}

// A cancel that arrives before any worker takes the command (none runs)
// holds once one does: through the NATS door, with no queued event, and
// after a queued event.
func TestCancelBeforeTaken(t *testing.T) {
	for _, tt := range []struct {
		name   string
		queued bool
		want   []contract.EventType
	}{
		{"no queued event", false, []contract.EventType{contract.EventCancelled}},
		{"queued", true, []contract.EventType{contract.EventQueued, contract.EventCancelled}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			nc, js := natstest.JetStream(t)
			cmd := command(contract.MethodLocalCopy)
			if tt.queued {
				queued(t, js, cmd)
			}
			if err := bus.PublishCommand(t.Context(), js, cmd); err != nil {
				t.Fatal(err)
			}
			cancelRequest(t, js, cmd.ID, "rucio")
			var ran atomic.Int32
			s := startOn(t, nc, js, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
				ran.Add(1)
				return worker.Result{Outcome: contract.OutcomeStaged}, nil
			}, nil)
			checkEventTypes(t, s.events(t, cmd.ID), tt.want)
			if got := ran.Load(); got != 0 {
				t.Errorf("work ran %d times, want 0", got)
			}
		})
	}
}

// A worker that dies mid-copy misses the cancel; the command's redelivery
// to another finds the cancel request and ends the request cancelled
// without working on it again.
func TestCancelWhileWorkerDown(t *testing.T) {
	url := natstest.Start(t)
	nc1, js1 := natstest.Connect(t, url)
	hang := make(chan struct{})
	started := make(chan struct{})
	short := func(o *worker.Options) { o.AckWait, o.MaxDeliver = time.Second, 3 }
	startOn(t, nc1, js1, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		close(started)
		<-hang // a process that stops answering: killed
		return worker.Result{}, errors.New("killed")
	}, short)
	t.Cleanup(func() { close(hang) }) // before the worker's own cleanup waits for it
	cmd := command(contract.MethodLocalCopy)
	if err := bus.PublishCommand(t.Context(), js1, cmd); err != nil {
		t.Fatal(err)
	}
	<-started
	nc1.Close() // the process is gone: no more in-progress reports, no cancel heard

	nc2, js2 := natstest.Connect(t, url)
	cancelRequest(t, js2, cmd.ID, "alice")
	var ran atomic.Int32
	s := startOn(t, nc2, js2, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		ran.Add(1)
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}, short)
	evs := s.events(t, cmd.ID)
	checkEventTypes(t, evs, []contract.EventType{contract.EventStarted, contract.EventCancelled})
	if got := evs[1].Attempt; got < 2 {
		t.Errorf("cancelled on attempt %d, want a redelivery", got)
	}
	if got := ran.Load(); got != 0 {
		t.Errorf("work ran %d times on the other worker, want 0", got)
	}
}

// A cancel of an ended request changes nothing.
func TestCancelEnded(t *testing.T) {
	s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}, nil)
	cmd := command(contract.MethodLocalCopy)
	s.submit(t, cmd)
	s.events(t, cmd.ID)
	cancelRequest(t, s.js, cmd.ID, "alice")
	// A cancel handled after this one is handled after the first: the
	// consumer takes them in turn.
	other := command(contract.MethodLocalCopy)
	queued(t, s.js, other)
	cancelRequest(t, s.js, other.ID, "alice")
	testenv.Eventually(t, 15*time.Second, "the later cancel", func() bool { return lastType(t, s.js, other.ID) == contract.EventCancelled })
	if got := lastType(t, s.js, cmd.ID); got != contract.EventSucceeded {
		t.Errorf("last event %s, want succeeded", got)
	}
}
