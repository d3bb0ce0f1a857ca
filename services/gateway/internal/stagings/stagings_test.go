package stagings_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

func setup(t *testing.T) (*stagings.Client, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.JetStream(t)
	return stagings.New(nc, js, contract.MethodSet(contract.Methods), time.Second), js
}

func lastEvent(t *testing.T, js jetstream.JetStream, id string) contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(ctx, contract.EventSubject(id))
	if err != nil {
		t.Fatal(err)
	}
	var ev contract.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestSubmitQueuesOnlyAnUntouchedRequest(t *testing.T) {
	tests := []struct {
		name string
		// before publishes a worker's event ahead of the gateway's queued
		// one, as a fast worker can.
		before contract.EventType
		want   contract.EventType
	}{
		{"fresh request", "", contract.EventQueued},
		{"worker started first", contract.EventStarted, contract.EventStarted},
		{"worker finished first", contract.EventSucceeded, contract.EventSucceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, js := setup(t)
			ctx := context.Background()
			cmd := c.NewCommand(stagings.Item{Method: "local_copy", Username: "alice", LocalPathOnStorage: "a", RelativePath: "b"})
			if tt.before != "" {
				ev := contract.EventFor(cmd, tt.before)
				ev.ID, ev.Time, ev.Source, ev.Outcome = "w1", time.Now(), "stager", contract.OutcomeStaged
				if err := bus.PublishEvent(ctx, js, ev); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Submit(ctx, cmd); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			if got := lastEvent(t, js, cmd.ID).Type; got != tt.want {
				t.Errorf("current state %s, want %s", got, tt.want)
			}
		})
	}
}

func TestWatchSeesOutcome(t *testing.T) {
	c, js := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := c.NewCommand(stagings.Item{Method: "local_copy", Username: "alice", LocalPathOnStorage: "a", RelativePath: "b"})
	w, err := c.Watch(cmd.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := c.Submit(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	for i, typ := range []contract.EventType{contract.EventStarted, contract.EventProgress, contract.EventFailed} {
		ev := contract.EventFor(cmd, typ)
		ev.ID, ev.Time, ev.Source = string(typ), time.Now(), "stager"
		ev.Progress = &contract.Progress{BytesDone: int64(i)}
		ev.Error = contract.Errorf(contract.CodeNoSpace, "full")
		if err := bus.PublishEvent(ctx, js, ev); err != nil {
			t.Fatal(err)
		}
	}
	ev, err := w.Outcome(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != contract.EventFailed || ev.Error.Code != contract.CodeNoSpace {
		t.Errorf("outcome = %+v, want failed no_space", ev)
	}

	// Nothing more comes: the wait ends with its context.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := w.Outcome(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Outcome = %v, want deadline exceeded", err)
	}
}

// TestCloseEndsTheSharedSubscription checks that Close takes the watches'
// shared subscription off the connection and that no watch makes it again.
func TestCloseEndsTheSharedSubscription(t *testing.T) {
	nc, js := natstest.JetStream(t)
	c := stagings.New(nc, js, contract.MethodSet(contract.Methods), time.Second)
	before := nc.NumSubscriptions()
	w, err := c.Watch("a")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got, want := nc.NumSubscriptions(), before+1; got != want {
		t.Fatalf("%d subscriptions with a watch, want %d", got, want)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := nc.NumSubscriptions(); got != before {
		t.Errorf("%d subscriptions after Close, want %d", got, before)
	}
	if _, err := c.Watch("b"); err == nil {
		t.Error("Watch after Close: nil error, want one")
	}
	if got := nc.NumSubscriptions(); got != before {
		t.Errorf("%d subscriptions after a Watch on the closed client, want %d", got, before)
	}
}
