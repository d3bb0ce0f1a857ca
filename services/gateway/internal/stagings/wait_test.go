package stagings_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// publishEvent publishes a worker's event of type typ for cmd.
func publishEvent(ctx context.Context, t *testing.T, js jetstream.JetStream, cmd contract.Command, typ contract.EventType, n int) {
	t.Helper()
	ev := contract.EventFor(cmd, typ)
	ev.ID, ev.Time, ev.Source = fmt.Sprintf("%s-%s-%d", cmd.ID, typ, n), time.Now(), "stager"
	if typ == contract.EventSucceeded {
		ev.Outcome = contract.OutcomeStaged
	}
	if err := bus.PublishEvent(ctx, js, ev); err != nil {
		t.Error(err)
	}
}

func newCommand(c *stagings.Client) contract.Command {
	return c.NewCommand(stagings.Item{Method: "local_copy", Username: "alice", LocalPathOnStorage: "a", RelativePath: "b"})
}

// TestWatchAfterTheOutcome: a watch registered after the request ended
// still gets its outcome, from the stream.
func TestWatchAfterTheOutcome(t *testing.T) {
	c, js := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := newCommand(c)
	publishEvent(ctx, t, js, cmd, contract.EventStarted, 0)
	publishEvent(ctx, t, js, cmd, contract.EventSucceeded, 0)
	w, err := c.Watch(cmd.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ev, err := w.Outcome(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != contract.EventSucceeded {
		t.Errorf("outcome %s, want succeeded", ev.Type)
	}
}

// TestWatchRecoversDroppedEvents: when more events come than a watch
// holds, the terminal one may be dropped; the watch then reads it from the
// stream.
func TestWatchRecoversDroppedEvents(t *testing.T) {
	c, js := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := newCommand(c)
	w, err := c.Watch(cmd.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// The first wait reads the stream once and finds nothing yet.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if _, err := w.Outcome(short); err == nil {
		t.Fatal("Outcome before any event returned no error")
	}
	// Nobody reads while far more events than the buffer come.
	for i := range 200 {
		publishEvent(ctx, t, js, cmd, contract.EventProgress, i)
	}
	publishEvent(ctx, t, js, cmd, contract.EventSucceeded, 0)
	ev, err := w.Outcome(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != contract.EventSucceeded {
		t.Errorf("outcome %s, want succeeded", ev.Type)
	}
}

// TestWatchesShareOneSubscription runs many waits at once, each for its own
// request, on one client: each gets its own outcome, and the client holds
// one subscription however many wait.
func TestWatchesShareOneSubscription(t *testing.T) {
	nc, js := natstest.JetStream(t)
	c := stagings.New(nc, js, contract.MethodSet(contract.Methods), 2*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	before := nc.NumSubscriptions()
	const waits = 100
	var registered, done sync.WaitGroup
	registered.Add(waits)
	release := make(chan struct{})
	for i := range waits {
		done.Add(1)
		go func() {
			defer done.Done()
			cmd := newCommand(c)
			w, err := c.Watch(cmd.ID)
			registered.Done()
			if err != nil {
				t.Error(err)
				return
			}
			defer w.Close()
			<-release
			outcome := contract.EventSucceeded
			if i%2 == 1 {
				outcome = contract.EventFailed
			}
			publishEvent(ctx, t, js, cmd, contract.EventStarted, 0)
			publishEvent(ctx, t, js, cmd, outcome, 0)
			ev, err := w.Outcome(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			if ev.RequestID != cmd.ID || ev.Type != outcome {
				t.Errorf("outcome %s of %s, want %s of %s", ev.Type, ev.RequestID, outcome, cmd.ID)
			}
		}()
	}
	registered.Wait()
	if got := nc.NumSubscriptions() - before; got != 1 {
		t.Errorf("%d subscriptions for %d waits, want 1", got, waits)
	}
	close(release)
	done.Wait()
}

// TestOutcomeAnnouncedReadsNoStream: a watch made before the request's
// events, as the seed API makes it before Submit, gets the outcome from the
// shared subscription without reading the stream.
func TestOutcomeAnnouncedReadsNoStream(t *testing.T) {
	c, js := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var reads atomic.Int32
	for _, subject := range []string{"$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>"} {
		sub, err := js.Conn().Subscribe(subject, func(*nats.Msg) { reads.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	cmd := newCommand(c)
	w, err := c.Watch(cmd.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	outcome := make(chan contract.Event, 1)
	go func() {
		ev, err := w.Outcome(ctx)
		if err != nil {
			t.Error(err)
		}
		outcome <- ev
	}()
	// Whether Outcome is already waiting when the events come or finds
	// them buffered, an announced outcome needs no read of the stream.
	publishEvent(ctx, t, js, cmd, contract.EventStarted, 0)
	publishEvent(ctx, t, js, cmd, contract.EventSucceeded, 0)
	if ev := <-outcome; ev.Type != contract.EventSucceeded {
		t.Errorf("outcome %s, want succeeded", ev.Type)
	}
	if err := js.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if n := reads.Load(); n != 0 {
		t.Errorf("the stream was read %d times for an announced outcome, want 0", n)
	}
}
