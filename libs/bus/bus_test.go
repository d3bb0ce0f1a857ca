package bus_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
)

var quiet = slog.New(slog.DiscardHandler)

func setup(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js := natstest.JetStream(t)
	// Again: creating the streams is idempotent.
	if err := bus.EnsureStreams(t.Context(), js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func command(id string) contract.Command {
	return contract.Command{
		SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy,
		Username: "alice", LocalPathOnStorage: "a.fits", RelativePath: "a.fits",
	}
}

func TestPublishCommandDeduplicatesByRequestID(t *testing.T) {
	_, js := setup(t)
	ctx := t.Context()
	for range 3 {
		if err := bus.PublishCommand(ctx, js, command("req-1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.PublishCommand(ctx, js, command("req-2")); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, contract.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.State.Msgs, uint64(2); got != want {
		t.Errorf("messages on %s = %d, want %d (one per request id)", contract.StreamRequests, got, want)
	}
}

func TestPublishUnknownMethodHasNoStream(t *testing.T) {
	_, js := setup(t)
	cmd := command("req-x")
	cmd.Method = "teleport"
	err := bus.PublishCommand(t.Context(), js, cmd)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("PublishCommand(teleport) = %v, want %v", err, jetstream.ErrNoStreamResponse)
	}
}

// TestAckPolicy checks each branch of the one acknowledgement policy
// against a real consumer: how often the handler runs and whether the
// failure is recorded.
// A STAGING_EVENTS stream created by an older version, with the event
// subjects only, gains the download subjects when the services start, and
// keeps what it holds.
func TestEnsureStreamsAddsDownloadSubject(t *testing.T) {
	_, js := natstest.JetStream(t)
	ctx := t.Context()
	// What an older version created, in place of what natstest set up.
	if err := js.DeleteStream(ctx, contract.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: contract.StreamEvents, Subjects: []string{contract.SubjectEventsAll},
		Storage: jetstream.FileStorage, AllowDirect: true,
	}); err != nil {
		t.Fatal(err)
	}
	ev := contract.EventFor(command("req-1"), contract.EventSucceeded)
	ev.ID, ev.Source, ev.Time, ev.Outcome = "ev-1", "test", time.Now(), contract.OutcomeLinkIssued
	if err := bus.PublishEvent(ctx, js, ev); err != nil {
		t.Fatal(err)
	}
	dl := contract.DownloadEvent{
		SpecVersion: contract.SpecVersion, ID: "dl-1", Type: contract.DownloadCompleted, Time: time.Now(),
		Source: "test", RequestID: "req-1", DownloadID: "d-1", Bytes: 10,
	}
	if err := bus.PublishDownload(ctx, js, dl); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("PublishDownload before the update = %v, want %v", err, jetstream.ErrNoStreamResponse)
	}
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(info.Config.Subjects, []string{contract.SubjectEventsAll, contract.SubjectDownloadsAll}); diff != "" {
		t.Errorf("subjects after the update (-got +want):\n%s", diff)
	}
	if err := bus.PublishDownload(ctx, js, dl); err != nil {
		t.Fatalf("PublishDownload after the update: %v", err)
	}
	// The request's state is still its last event, not the download.
	last, err := s.GetLastMsgForSubject(ctx, contract.EventSubject("req-1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(last.Data); !strings.Contains(got, `"ev-1"`) {
		t.Errorf("last message on %s = %s, want the succeeded event", contract.EventSubject("req-1"), got)
	}
	if info.State.Msgs != 1 {
		t.Errorf("messages kept across the update = %d, want 1", info.State.Msgs)
	}
}

func TestAckPolicy(t *testing.T) {
	tests := []struct {
		name         string
		handler      func(calls int32) error
		wantCalls    int32
		wantFailures int32
	}{
		{"success acks once", func(int32) error { return nil }, 1, 0},
		{"permanent error terminates at once", func(int32) error { return bus.Permanent(errors.New("no such file")) }, 1, 1},
		{"transient error is retried until it succeeds", func(c int32) error {
			if c < 3 {
				return errors.New("flaky")
			}
			return nil
		}, 3, 0},
		{"transient error ends as failure after MaxDeliver", func(int32) error { return errors.New("always flaky") }, 4, 1},
		{"panic is redelivered", func(c int32) error {
			if c == 1 {
				panic("boom")
			}
			return nil
		}, 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, js := setup(t)
			ctx := t.Context()
			cons, err := bus.EnsureConsumer(ctx, js, bus.ConsumerOptions{
				Stream: contract.StreamRequests, Durable: "test",
				FilterSubjects: contract.RequestSubjects(contract.StagerMethods...),
				AckWait:        5 * time.Second, MaxDeliver: 4,
			})
			if err != nil {
				t.Fatal(err)
			}
			var calls, failures atomic.Int32
			policy := bus.AckPolicy{
				Log: quiet, AckWait: 5 * time.Second, MaxDeliver: 4,
				BaseDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond,
				OnFailure: func(context.Context, jetstream.Msg, error) error {
					failures.Add(1)
					return nil
				},
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- bus.Consume(runCtx, cons, 2, func(ctx context.Context, msg jetstream.Msg) {
					policy.Handle(ctx, msg, func(context.Context, jetstream.Msg) error {
						return tt.handler(calls.Add(1))
					})
				})
			}()
			if err := bus.PublishCommand(ctx, js, command("req-1")); err != nil {
				t.Fatal(err)
			}
			// Settled = the work queue is empty: acked or terminated.
			testenv.Eventually(t, 15*time.Second, "the message to be settled", func() bool {
				info, err := cons.Info(ctx)
				return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && calls.Load() >= tt.wantCalls
			})
			stop()
			if err := <-done; err != nil {
				t.Fatalf("Consume: %v", err)
			}
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("handler calls = %d, want %d", got, tt.wantCalls)
			}
			if got := failures.Load(); got != tt.wantFailures {
				t.Errorf("recorded failures = %d, want %d", got, tt.wantFailures)
			}
		})
	}
}

func TestTraceContextCrossesNATS(t *testing.T) {
	otel.SetTextMapPropagator(propagation.TraceContext{})
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	nc, js := setup(t)
	ctx, span := tp.Tracer("test").Start(t.Context(), "submit")
	defer span.End()

	got := make(chan trace.SpanContext, 1)
	sub, err := nc.Subscribe(contract.EventSubject("req-1"), func(m *nats.Msg) {
		got <- trace.SpanContextFromContext(bus.ExtractTrace(context.Background(), m.Header))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	ev := contract.EventFor(command("req-1"), contract.EventQueued)
	ev.ID, ev.Source, ev.Time = "ev-1", "test", time.Now()
	if err := bus.PublishEvent(ctx, js, ev); err != nil {
		t.Fatal(err)
	}
	select {
	case sc := <-got:
		if sc.TraceID() != span.SpanContext().TraceID() {
			t.Errorf("trace id after NATS = %s, want %s", sc.TraceID(), span.SpanContext().TraceID())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event not received")
	}
}

func TestConnectRefusesOldServer(t *testing.T) {
	url := testenv.Lookup(t, "STAGING_TEST_NATS_LEGACY_URL", "a nats-server older than "+bus.MinServerVersion+" (Debian's 2.9)")
	nc, err := bus.Connect(url, "bus-test", quiet)
	if err == nil {
		v := nc.ConnectedServerVersion()
		nc.Close()
		t.Skipf("SKIP: the server at %s is %s, not older than %s", url, v, bus.MinServerVersion)
	}
	if !strings.Contains(err.Error(), "needs "+bus.MinServerVersion) {
		t.Fatalf("Connect(%s) = %v, want a refusal naming the minimum version", url, err)
	}
}

// TestStreamsLookUpOnce: a stream's handle is looked up on the first call
// only; later calls send nothing to the server, and the handle reads.
func TestStreamsLookUpOnce(t *testing.T) {
	nc, js := setup(t)
	ctx := t.Context()
	var streams bus.Streams
	first, err := streams.Stream(ctx, js, contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	sent := nc.Stats().OutMsgs
	again, err := streams.Stream(ctx, js, contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if again != first || nc.Stats().OutMsgs != sent {
		t.Errorf("second call: same handle %t, %d requests sent; want the same handle and none", again == first, nc.Stats().OutMsgs-sent)
	}
	if _, err := again.GetLastMsgForSubject(ctx, contract.EventSubject("no-such-request")); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("read through the handle: %v, want message not found", err)
	}
	if _, err := streams.Stream(ctx, js, "NO_SUCH_STREAM"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("unknown stream: %v, want stream not found", err)
	}
}
