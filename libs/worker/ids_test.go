package worker_test

import (
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/contract/contracttest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/libs/worker"
)

// An id names one request. A command that reuses the id of another
// request, running or ended, is not carried out: it is rejected
// (id_conflict) under a fresh id that names the other in conflicts_with,
// and the other request's events are untouched.
func TestIDConflict(t *testing.T) {
	tests := []struct {
		name string
		// running: the second command comes while the first is worked on;
		// otherwise after the first has ended.
		running bool
		change  func(*contract.Command)
		// subject is the method whose subject the second command goes on
		// (default: its own).
		subject contract.Method
	}{
		{name: "other user, while running", running: true, change: func(c *contract.Command) { c.Username = "bob" }},
		{name: "other expected checksum, while running", running: true, change: func(c *contract.Command) { c.ExpectedAdler32 = "ffffffff" }},
		{name: "other target, after the end", change: func(c *contract.Command) { c.RelativePath = "data/y.fits" }},
		{name: "other method, after the end", change: func(c *contract.Command) { c.Method = contract.MethodLocalSymlink }},
		{name: "other job, after the end", change: func(c *contract.Command) { c.JobID = "job-2" }},
		// Not even a rejection lands on the first request's subject.
		{name: "invalid, while running", running: true, change: func(c *contract.Command) { c.Username = "Bob!" }},
		{
			name: "other method on the first's subject, while running", running: true,
			change: func(c *contract.Command) { c.Method = contract.MethodLocalSymlink }, subject: contract.MethodLocalCopy,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			var mu sync.Mutex
			var ran []string // the usernames of the commands worked on
			s := start(t, func(_ context.Context, cmd contract.Command, _ *worker.Reporter) (worker.Result, error) {
				mu.Lock()
				ran = append(ran, cmd.Username)
				mu.Unlock()
				<-release
				return worker.Result{Outcome: contract.OutcomeStaged}, nil
			}, nil)
			first := command(contract.MethodLocalCopy)
			first.ExpectedAdler32 = "0a1b2c3d"
			s.submit(t, first)
			if tt.running {
				testenv.Eventually(t, 15*time.Second, "the first request running", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(ran) == 1
				})
			} else {
				close(release)
				s.events(t, first.ID)
			}

			rejected, err := s.nc.SubscribeSync(contract.SubjectEventsAll)
			if err != nil {
				t.Fatal(err)
			}
			defer rejected.Unsubscribe()
			second := first
			tt.change(&second)
			subject := tt.subject
			if subject == "" {
				subject = second.Method
			}
			// Without a message id, as a copy published after the
			// deduplication window or by a system that sets none.
			s.publish(t, subject, second)

			ev := nextRejected(t, rejected)
			if ev.Error.Code != contract.CodeIDConflict || ev.ConflictsWith != first.ID {
				t.Errorf("rejected with %s, conflicts_with %q; want %s, %q", ev.Error.Code, ev.ConflictsWith, contract.CodeIDConflict, first.ID)
			}
			if ev.RequestID == first.ID || contract.ValidateID("request_id", ev.RequestID) != nil {
				t.Errorf("the conflict is recorded under %q, want a fresh valid id", ev.RequestID)
			}
			// It records what the second command asked for.
			if want := contract.EventFor(second, ev.Type); ev.Username != want.Username || ev.Method != want.Method ||
				ev.RelativePath != want.RelativePath || ev.JobID != want.JobID || ev.ExpectedAdler32 != want.ExpectedAdler32 {
				t.Errorf("conflict record %+v does not describe the second command %+v", ev, second)
			}
			if tt.running {
				close(release)
			}
			checkEvents(t, s, first, []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventSucceeded, Attempt: 1, Outcome: contract.OutcomeStaged},
			})
			checkEventTypes(t, s.events(t, ev.RequestID), []contract.EventType{contract.EventRejected})
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff(ran, []string{"alice"}); diff != "" {
				t.Errorf("users whose command was worked on (-got +want):\n%s", diff)
			}
		})
	}
}

// nextRejected waits on sub for a rejected event and checks it against the
// event schema.
func nextRejected(t *testing.T, sub *nats.Subscription) contract.Event {
	t.Helper()
	schema := contracttest.Schema(t, contracttest.Event)
	deadline := time.Now().Add(10 * time.Second)
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no rejected event: %v", err)
		}
		var ev contract.Event
		if err := json.Unmarshal(msg.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type == contract.EventRejected {
			contracttest.Check(t, schema, msg.Data)
			if ev.Error == nil {
				t.Fatalf("rejected event without an error: %s", msg.Data)
			}
			return ev
		}
	}
}

// A copy of a request another delivery is working on is acknowledged and
// nothing more; the copy being worked on, if its worker dies, is still
// redelivered and worked on again, so nothing is lost.
func TestRepeatWhileRunning(t *testing.T) {
	crash := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		mu.Lock()
		calls++
		call := calls
		mu.Unlock()
		if call == 1 {
			<-crash
			panic("the worker dies")
		}
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}, func(o *worker.Options) { o.MaxDeliver = 3 })
	cmd := command(contract.MethodLocalCopy)
	s.submit(t, cmd)
	testenv.Eventually(t, 15*time.Second, "the request running", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls == 1
	})
	// The same command again, without a message id.
	s.publish(t, contract.MethodLocalCopy, cmd)
	testenv.Eventually(t, 15*time.Second, "the copy acknowledged", func() bool {
		stream, err := s.js.Stream(t.Context(), contract.StreamRequests)
		if err != nil {
			return false
		}
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 1
	})
	close(crash)
	checkEvents(t, s, cmd, []summary{
		{Type: contract.EventStarted, Attempt: 1},
		{Type: contract.EventStarted, Attempt: 2},
		{Type: contract.EventSucceeded, Attempt: 2, Outcome: contract.OutcomeStaged},
	})
	mu.Lock()
	defer mu.Unlock()
	if calls != 2 {
		t.Errorf("work ran %d times, want 2: the first delivery and its redelivery", calls)
	}
}

// A request whose only event is the gateway's queued is worked on by a
// delivery that is checked (here: a command without a message id): queued
// says no worker has taken it yet.
func TestQueuedRequestIsWorkedOn(t *testing.T) {
	s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}, nil)
	cmd := command(contract.MethodLocalCopy)
	queued := contract.EventFor(cmd, contract.EventQueued)
	queued.ID, queued.Time, queued.Source = uuid.NewString(), time.Now().UTC(), "gateway"
	if err := bus.PublishEvent(t.Context(), s.js, queued); err != nil {
		t.Fatal(err)
	}
	s.publish(t, contract.MethodLocalCopy, cmd)
	checkEventTypes(t, s.events(t, cmd.ID), []contract.EventType{contract.EventQueued, contract.EventStarted, contract.EventSucceeded})
}

// Two copies of a request taken at the same moment: between one copy's
// read of the request's last event and its started event, the other
// copy's worker starts the request. The started event is published only
// if nothing came after what was read, so the late copy finds the request
// running and does no work.
func TestCopyTakenAtTheSameMoment(t *testing.T) {
	var calls atomic.Int32
	cmd := command(contract.MethodLocalCopy)
	s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		calls.Add(1)
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}, func(o *worker.Options) {
		o.JS = racingJS{JetStream: o.JS, other: func(ctx context.Context) {
			started := contract.EventFor(cmd, contract.EventStarted)
			started.ID, started.Time, started.Source, started.Attempt = uuid.NewString(), time.Now().UTC(), "other-worker", 1
			if err := bus.PublishEvent(ctx, o.JS, started); err != nil {
				t.Error(err)
			}
		}}
	})
	queued := contract.EventFor(cmd, contract.EventQueued)
	queued.ID, queued.Time, queued.Source = uuid.NewString(), time.Now().UTC(), "gateway"
	if err := bus.PublishEvent(t.Context(), s.js, queued); err != nil {
		t.Fatal(err)
	}
	// Without a message id, so that the worker reads the last event.
	s.publish(t, contract.MethodLocalCopy, cmd)
	testenv.Eventually(t, 15*time.Second, "the copy acknowledged", func() bool {
		stream, err := s.js.Stream(t.Context(), contract.StreamRequests)
		if err != nil {
			return false
		}
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})
	// The other worker ends the request; nothing of this worker's is
	// between.
	succeeded := contract.EventFor(cmd, contract.EventSucceeded)
	succeeded.ID, succeeded.Time, succeeded.Source, succeeded.Attempt, succeeded.Outcome = uuid.NewString(), time.Now().UTC(), "other-worker", 1, contract.OutcomeStaged
	if err := bus.PublishEvent(t.Context(), s.js, succeeded); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range s.events(t, cmd.ID) {
		got = append(got, string(ev.Type)+" by "+ev.Source)
	}
	if diff := cmp.Diff(got, []string{"queued by gateway", "started by other-worker", "succeeded by other-worker"}); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("work ran %d times, want 0: the other copy's worker has the request", n)
	}
}

// racingJS runs other once, right after the first read of a request's last
// event: the moment another worker could start the same request.
type racingJS struct {
	jetstream.JetStream
	other func(context.Context)
}

func (r racingJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	st, err := r.JetStream.Stream(ctx, name)
	if err != nil || name != contract.StreamEvents {
		return st, err
	}
	return &racingStream{Stream: st, other: r.other}, nil
}

type racingStream struct {
	jetstream.Stream
	other func(context.Context)
	once  sync.Once
}

func (r *racingStream) GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	msg, err := r.Stream.GetLastMsgForSubject(ctx, subject)
	r.once.Do(func() { r.other(ctx) })
	return msg, err
}
