package worker_test

// Handle's behaviour around one delivery, table by table (validation, outcomes,
// retries, metrics, events); the id, cancel and run tests have files of their
// own. Over 400 lines because the tables share one harness, defined here.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/contract/contracttest"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/libs/worker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// system is a worker running against its own embedded NATS server.
type system struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	reg *prometheus.Registry
	w   *worker.Worker
}

// start runs a worker for local_copy and local_symlink whose work is
// stage, with opts edited by edit, until the test ends.
func start(t *testing.T, stage worker.StageFunc, edit func(*worker.Options)) *system {
	t.Helper()
	nc, js := natstest.JetStream(t)
	return startOn(t, nc, js, stage, edit)
}

// startOn is start on a connection of the test's own: several workers
// may then share one server.
func startOn(t *testing.T, nc *nats.Conn, js jetstream.JetStream, stage worker.StageFunc, edit func(*worker.Options)) *system {
	t.Helper()
	s := &system{nc: nc, js: js, reg: prometheus.NewRegistry()}
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	o := worker.Options{
		Source:       "test-worker",
		Methods:      contract.MethodSet{contract.MethodLocalCopy, contract.MethodLocalSymlink},
		Stage:        stage,
		JS:           js,
		Log:          quiet,
		Tracer:       tp.Tracer("test"),
		Registerer:   s.reg,
		MetricPrefix: "staging_test",
		Durable:      "test-worker",
		Concurrency:  2,
		AckWait:      5 * time.Second,
		MaxDeliver:   2,
		Timeout:      30 * time.Second,
	}
	if edit != nil {
		edit(&o)
	}
	var err error
	s.w, err = worker.New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.w.Run(ctx) }()
	testenv.Eventually(t, 15*time.Second, "the worker's consumer", func() bool {
		_, err := js.Consumer(t.Context(), contract.StreamRequests, o.Durable)
		return err == nil
	})
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return s
}

func command(method contract.Method) contract.Command {
	return contract.Command{
		SpecVersion:        contract.SpecVersion,
		ID:                 uuid.NewString(),
		JobID:              "job-1",
		Method:             method,
		Username:           "alice",
		LocalPathOnStorage: "obs/x.fits",
		RelativePath:       "data/x.fits",
		Origin:             "test",
		RequestedAt:        time.Now().UTC(),
	}
}

func (s *system) submit(t *testing.T, cmd contract.Command) {
	t.Helper()
	if err := bus.PublishCommand(t.Context(), s.js, cmd); err != nil {
		t.Fatal(err)
	}
}

// publish publishes cmd on the subject of method, which may not be its own.
func (s *system) publish(t *testing.T, method contract.Method, cmd contract.Command) {
	t.Helper()
	data, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.js.Publish(t.Context(), contract.RequestSubject(method), data); err != nil {
		t.Fatal(err)
	}
}

// events reads the events of request id up to the terminal one, checking
// each against the event schema, then waits for the work queue to be empty
// and checks that no event followed.
func (s *system) events(t *testing.T, id string) []contract.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	subject := contract.EventSubject(id)
	c, err := s.js.OrderedConsumer(ctx, contract.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	schema := contracttest.Schema(t, contracttest.Event)
	var evs []contract.Event
	for len(evs) == 0 || !evs[len(evs)-1].Type.Terminal() {
		msg, err := c.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("waiting for the events of %s (got %+v): %v", id, evs, err)
		}
		contracttest.Check(t, schema, msg.Data())
		var ev contract.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	testenv.Eventually(t, 15*time.Second, "the work queue to empty", func() bool {
		stream, err := s.js.Stream(ctx, contract.StreamRequests)
		if err != nil {
			return false
		}
		info, err := stream.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	stream, err := s.js.Stream(ctx, contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects[subject]; got != uint64(len(evs)) {
		t.Errorf("%s holds %d events, want %d: one terminal event, published once", subject, got, len(evs))
	}
	return evs
}

// summary keeps the fields of an event a test compares.
type summary struct {
	Type     contract.EventType
	Attempt  int
	Outcome  contract.Outcome
	Code     contract.Code
	Bytes    int64
	Files    int64
	Message  string
	Progress *contract.Progress
}

func summarize(evs []contract.Event) []summary {
	out := make([]summary, len(evs))
	for i, ev := range evs {
		out[i] = summary{Type: ev.Type, Attempt: ev.Attempt, Outcome: ev.Outcome, Bytes: ev.Bytes, Files: ev.Files, Message: ev.Message, Progress: ev.Progress}
		if ev.Error != nil {
			out[i].Code = ev.Error.Code
		}
	}
	return out
}

// TestHandle runs each kind of outcome of the work through a real consumer
// and checks the events published, how often the work ran and the request
// metrics.
func TestHandle(t *testing.T) {
	staged := worker.Result{Outcome: contract.OutcomeStaged, Bytes: 10, Files: 1, Message: "staged"}
	tests := []struct {
		name   string
		method contract.Method
		// subject is the method whose subject the command goes on (default:
		// its own).
		subject contract.Method
		allowed contract.MethodSet
		// work is the outcome of the call-th run of the work.
		work      func(call int32) (worker.Result, error)
		wantCalls int32
		want      []summary
		// wantCount is the requests_total series that must read 1.
		wantCount [2]string
	}{
		{
			name: "success", method: contract.MethodLocalCopy,
			work:      func(int32) (worker.Result, error) { return staged, nil },
			wantCalls: 1,
			want: []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventSucceeded, Attempt: 1, Outcome: contract.OutcomeStaged, Bytes: 10, Files: 1, Message: "staged"},
			},
			wantCount: [2]string{"local_copy", "staged"},
		},
		{
			name: "coded error is a verdict", method: contract.MethodLocalCopy,
			work: func(int32) (worker.Result, error) {
				return worker.Result{}, contract.Errorf(contract.CodeSourceNotFound, "gone")
			},
			wantCalls: 1,
			want: []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventFailed, Attempt: 1, Code: contract.CodeSourceNotFound},
			},
			wantCount: [2]string{"local_copy", "failed"},
		},
		{
			name: "error marked permanent is not retried", method: contract.MethodLocalSymlink,
			work:      func(int32) (worker.Result, error) { return worker.Result{}, bus.Permanent(errors.New("broken")) },
			wantCalls: 1,
			want: []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventFailed, Attempt: 1, Code: contract.CodeRetriesExhausted},
			},
			wantCount: [2]string{"local_symlink", "failed"},
		},
		{
			name: "unavailable is retried and may succeed", method: contract.MethodLocalCopy,
			work: func(call int32) (worker.Result, error) {
				if call == 1 {
					return worker.Result{}, contract.Errorf(contract.CodeUnavailable, "down")
				}
				return staged, nil
			},
			wantCalls: 2,
			want: []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventStarted, Attempt: 2},
				{Type: contract.EventSucceeded, Attempt: 2, Outcome: contract.OutcomeStaged, Bytes: 10, Files: 1, Message: "staged"},
			},
			wantCount: [2]string{"local_copy", "staged"},
		},
		{
			name: "hub timeout fails after the last delivery", method: contract.MethodLocalCopy,
			work: func(int32) (worker.Result, error) {
				return worker.Result{}, contract.Errorf(contract.CodeJupyterTimeout, "slow")
			},
			wantCalls: 2,
			want: []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventStarted, Attempt: 2},
				{Type: contract.EventFailed, Attempt: 2, Code: contract.CodeJupyterTimeout},
			},
			wantCount: [2]string{"local_copy", "failed"},
		},
		{
			name: "fault without a code exhausts the retries", method: contract.MethodLocalCopy,
			work:      func(int32) (worker.Result, error) { return worker.Result{}, errors.New("disk gone") },
			wantCalls: 2,
			want: []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventStarted, Attempt: 2},
				{Type: contract.EventFailed, Attempt: 2, Code: contract.CodeRetriesExhausted},
			},
			wantCount: [2]string{"local_copy", "failed"},
		},
		{
			name: "panic is redelivered", method: contract.MethodLocalCopy,
			work: func(call int32) (worker.Result, error) {
				if call == 1 {
					panic("boom")
				}
				return staged, nil
			},
			wantCalls: 2,
			want: []summary{
				{Type: contract.EventStarted, Attempt: 1},
				{Type: contract.EventStarted, Attempt: 2},
				{Type: contract.EventSucceeded, Attempt: 2, Outcome: contract.OutcomeStaged, Bytes: 10, Files: 1, Message: "staged"},
			},
			wantCount: [2]string{"local_copy", "staged"},
		},
		{
			name: "method the site forbids", method: contract.MethodLocalSymlink, allowed: contract.MethodSet{contract.MethodLocalCopy},
			want:      []summary{{Type: contract.EventRejected, Attempt: 1, Code: contract.CodeMethodNotAllowed}},
			wantCount: [2]string{"local_symlink", "rejected"},
		},
		{
			// Sites grant publish rights per method subject: a body naming
			// another method, even one this worker carries out, would get
			// around them.
			name: "method other than the subject's", method: contract.MethodLocalSymlink, subject: contract.MethodLocalCopy,
			want:      []summary{{Type: contract.EventRejected, Attempt: 1, Code: contract.CodeMethodMismatch}},
			wantCount: [2]string{"local_symlink", "rejected"},
		},
		{
			name: "method the worker does not carry out, on another's subject", method: contract.MethodLocalHardlink, subject: contract.MethodLocalCopy,
			want:      []summary{{Type: contract.EventRejected, Attempt: 1, Code: contract.CodeMethodMismatch}},
			wantCount: [2]string{"local_hardlink", "rejected"},
		},
		{
			name: "method other than the subject's, which the site forbids", method: contract.MethodLocalCopy, subject: contract.MethodLocalSymlink,
			allowed:   contract.MethodSet{contract.MethodLocalSymlink},
			want:      []summary{{Type: contract.EventRejected, Attempt: 1, Code: contract.CodeMethodMismatch}},
			wantCount: [2]string{"local_copy", "rejected"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
				return tt.work(calls.Add(1))
			}, func(o *worker.Options) { o.Allowed = tt.allowed })
			cmd := command(tt.method)
			subject := tt.subject
			if subject == "" {
				subject = tt.method
			}
			s.publish(t, subject, cmd)
			checkEvents(t, s, cmd, tt.want)
			if got := calls.Load(); got != tt.wantCalls {
				t.Errorf("work ran %d times, want %d", got, tt.wantCalls)
			}
			if got := counter(t, s.reg, "staging_test_requests_total", tt.wantCount[0], tt.wantCount[1]); got != 1 {
				t.Errorf("staging_test_requests_total{method=%q,outcome=%q} = %v, want 1", tt.wantCount[0], tt.wantCount[1], got)
			}
		})
	}
}

// checkEvents compares the events of cmd with want, and checks that every
// event describes the request.
func checkEvents(t *testing.T, s *system, cmd contract.Command, want []summary) {
	t.Helper()
	evs := s.events(t, cmd.ID)
	if diff := cmp.Diff(summarize(evs), want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
	for _, ev := range evs {
		got := contract.Event{
			SpecVersion: ev.SpecVersion, Type: ev.Type, Source: ev.Source, RequestID: ev.RequestID, JobID: ev.JobID,
			Method: ev.Method, Username: ev.Username, LocalPathOnStorage: ev.LocalPathOnStorage,
			RelativePath: ev.RelativePath, Origin: ev.Origin, ExpectedAdler32: ev.ExpectedAdler32,
		}
		want := contract.EventFor(cmd, ev.Type)
		want.Source = "test-worker"
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("%s event's request fields (-got +want):\n%s", ev.Type, diff)
		}
		if ev.ID == "" || ev.Time.IsZero() || len(ev.TraceID) != 32 {
			t.Errorf("%s event lacks its id, time or trace id: %+v", ev.Type, ev)
		}
	}
}

// counter reads one series of a counter vector from reg.
func counter(t *testing.T, reg *prometheus.Registry, name, method, outcome string) float64 {
	t.Helper()
	return series(t, reg, name, map[string]string{"method": method, "outcome": outcome})
}

// A command that cannot be read is still recorded, under a valid id: its
// own when it has one, a fresh one otherwise.
func TestMalformedCommandsAreRejected(t *testing.T) {
	s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		t.Error("the work ran for a malformed command")
		return worker.Result{}, nil
	}, nil)
	tests := []struct {
		name     string
		body     string
		wantCode contract.Code
		wantID   string
	}{
		{"not json", `{"id": `, contract.CodeMalformed, ""},
		{"bad username", `{"spec_version":"1.0","id":"req-1","method":"local_copy","username":"Alice!","local_path_on_storage":"a","relative_path":"b"}`, contract.CodeInvalidUsername, "req-1"},
		{"bad id", `{"spec_version":"1.0","id":"a.b","method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"b"}`, contract.CodeInvalidID, ""},
		{"future spec", `{"spec_version":"2.0","id":"req-2","method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"b"}`, contract.CodeUnsupported, "req-2"},
		{"climbing target", `{"spec_version":"1.0","id":"req-3","method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"../bob/x"}`, contract.CodeOutsideUserArea, "req-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := s.nc.SubscribeSync(contract.SubjectEventsAll)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if _, err := s.js.Publish(t.Context(), contract.RequestSubject(contract.MethodLocalCopy), []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			msg, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var ev contract.Event
			if err := json.Unmarshal(msg.Data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type != contract.EventRejected || ev.Error == nil || ev.Error.Code != tt.wantCode {
				t.Fatalf("event = %+v, want rejected with %s", ev, tt.wantCode)
			}
			if tt.wantID != "" && ev.RequestID != tt.wantID {
				t.Errorf("request id = %q, want %q", ev.RequestID, tt.wantID)
			}
			if err := contract.ValidateID("request_id", ev.RequestID); err != nil {
				t.Errorf("rejected event's request id: %v", err)
			}
		})
	}
	// The count follows the event it is about, so it may lag behind.
	testenv.Eventually(t, 15*time.Second, "4 rejected local_copy requests counted", func() bool {
		return counter(t, s.reg, "staging_test_requests_total", "local_copy", "rejected") == 4
	})
	if got := counter(t, s.reg, "staging_test_requests_total", "invalid", "rejected"); got != 1 {
		t.Errorf("rejected requests of no readable method = %v, want 1", got)
	}
	labels := map[string]string{"method": "local_copy", "outcome": "rejected", "code": string(contract.CodeOutsideUserArea)}
	if got := series(t, s.reg, "staging_test_failures_total", labels); got != 1 {
		t.Errorf("staging_test_failures_total%v = %v, want 1", labels, got)
	}
}

// Progress reports are spaced, except the last; messages all go out, with
// the latest progress, as the schema requires of every progress event.
func TestProgressIsSpaced(t *testing.T) {
	s := start(t, func(_ context.Context, _ contract.Command, report *worker.Reporter) (worker.Result, error) {
		report.Message("server starting")
		for done := int64(1); done < 100; done++ {
			report.Progress(contract.Progress{BytesDone: done, BytesTotal: 100, FilesTotal: 1})
		}
		report.Message("server ready")
		report.Progress(contract.Progress{BytesDone: 100, BytesTotal: 100, FilesDone: 1, FilesTotal: 1})
		return worker.Result{Outcome: contract.OutcomeStaged, Bytes: 100, Files: 1}, nil
	}, func(o *worker.Options) { o.ProgressEvery = time.Hour })
	cmd := command(contract.MethodLocalCopy)
	s.submit(t, cmd)
	want := []summary{
		{Type: contract.EventStarted, Attempt: 1},
		{Type: contract.EventProgress, Attempt: 1, Message: "server starting", Progress: &contract.Progress{}},
		{Type: contract.EventProgress, Attempt: 1, Progress: &contract.Progress{BytesDone: 1, BytesTotal: 100, FilesTotal: 1}},
		{Type: contract.EventProgress, Attempt: 1, Message: "server ready", Progress: &contract.Progress{BytesDone: 99, BytesTotal: 100, FilesTotal: 1}},
		{Type: contract.EventProgress, Attempt: 1, Progress: &contract.Progress{BytesDone: 100, BytesTotal: 100, FilesDone: 1, FilesTotal: 1}},
		{Type: contract.EventSucceeded, Attempt: 1, Outcome: contract.OutcomeStaged, Bytes: 100, Files: 1},
	}
	if diff := cmp.Diff(summarize(s.events(t, cmd.ID)), want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}

// A DID's resolution goes out in resolved events of at most
// contract.MaxResolvedPaths paths, in order, each with the DID's totals;
// every part is a valid event (events checks each against the schema).
func TestResolvedInParts(t *testing.T) {
	paths := make([]string, 2*contract.MaxResolvedPaths+5)
	for i := range paths {
		paths[i] = fmt.Sprintf("testsrc/%02x/file-%d", i%256, i)
	}
	s := start(t, func(_ context.Context, _ contract.Command, report *worker.Reporter) (worker.Result, error) {
		if err := report.Resolved(paths, 4096); err != nil {
			return worker.Result{}, err
		}
		return worker.Result{Outcome: contract.OutcomeStaged, Bytes: 4096, Files: int64(len(paths))}, nil
	}, nil)
	cmd := command(contract.MethodLocalCopy)
	cmd.LocalPathOnStorage, cmd.DID = "", "testsrc:ds1"
	s.submit(t, cmd)
	evs := s.events(t, cmd.ID)
	checkEventTypes(t, evs, []contract.EventType{contract.EventStarted, contract.EventResolved, contract.EventResolved, contract.EventResolved, contract.EventSucceeded})
	var got []string
	for i, ev := range evs[1 : len(evs)-1] {
		r := ev.Resolved
		if ev.DID != cmd.DID || r.Files != int64(len(paths)) || r.Bytes != 4096 || r.Part != i+1 || r.Parts != 3 {
			t.Errorf("part %d: did %s, %+v", i+1, ev.DID, *r)
		}
		if want := fmt.Sprintf("testsrc:ds1 resolved into %d files (4096 bytes); part %d of 3", len(paths), i+1); ev.Message != want {
			t.Errorf("part %d: message %q, want %q", i+1, ev.Message, want)
		}
		got = append(got, r.Paths...)
	}
	if diff := cmp.Diff(paths, got); diff != "" {
		t.Errorf("the parts' paths (-want +got):\n%s", diff)
	}
}

// OnFailure records a failure the handler did not record, so the request
// still ends in the audit, under a valid id even when the command has none.
func TestOnFailure(t *testing.T) {
	tests := []struct {
		name   string
		body   func(id string) string
		keepID bool
	}{
		{"readable command", func(id string) string {
			data, _ := json.Marshal(contract.Command{SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy, Username: "alice"})
			return string(data)
		}, true},
		{"unreadable command", func(string) string { return "{" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
				return worker.Result{}, nil
			}, func(o *worker.Options) { o.Methods = contract.MethodSet{contract.MethodLocalSymlink} })
			// Take the message with a consumer of the test's own, so the
			// worker never sees it.
			cons, err := bus.EnsureConsumer(t.Context(), s.js, bus.ConsumerOptions{
				Stream: contract.StreamRequests, Durable: "by-hand",
				FilterSubjects: []string{contract.RequestSubject(contract.MethodLocalCopy)},
				AckWait:        5 * time.Second, MaxDeliver: 1,
			})
			if err != nil {
				t.Fatal(err)
			}
			id := uuid.NewString()
			if _, err := s.js.Publish(t.Context(), contract.RequestSubject(contract.MethodLocalCopy), []byte(tt.body(id))); err != nil {
				t.Fatal(err)
			}
			msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				t.Fatal(err)
			}
			sub, err := s.nc.SubscribeSync(contract.SubjectEventsAll)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := s.w.OnFailure(t.Context(), msg, errors.New("publish failed")); err != nil {
				t.Fatalf("OnFailure = %v", err)
			}
			got, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var ev contract.Event
			if err := json.Unmarshal(got.Data, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type != contract.EventFailed || ev.Error == nil || ev.Error.Code != contract.CodeRetriesExhausted || ev.Attempt != 1 {
				t.Errorf("event = %+v, want failed with %s on attempt 1", ev, contract.CodeRetriesExhausted)
			}
			if gotKept := ev.RequestID == id; gotKept != tt.keepID {
				t.Errorf("request id = %q (command's: %q); kept = %v, want %v", ev.RequestID, id, gotKept, tt.keepID)
			}
			if err := contract.ValidateID("request_id", ev.RequestID); err != nil {
				t.Errorf("failed event's request id: %v", err)
			}
		})
	}
}

func TestNewChecksOptions(t *testing.T) {
	stage := func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		return worker.Result{}, nil
	}
	complete := func() worker.Options {
		return worker.Options{
			Source: "w", Methods: contract.MethodSet{contract.MethodLocalCopy}, Stage: stage,
			JS: nopJS{}, Log: quiet, Registerer: prometheus.NewRegistry(), MetricPrefix: "staging_w",
		}
	}
	tests := []struct {
		name   string
		edit   func(*worker.Options)
		wantOK bool
	}{
		{"complete", func(*worker.Options) {}, true},
		{"no source", func(o *worker.Options) { o.Source = "" }, false},
		{"no methods", func(o *worker.Options) { o.Methods = nil }, false},
		{"no work", func(o *worker.Options) { o.Stage = nil }, false},
		{"no registerer", func(o *worker.Options) { o.Registerer = nil }, false},
		{"no metric prefix", func(o *worker.Options) { o.MetricPrefix = "" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := complete()
			tt.edit(&o)
			_, err := worker.New(o)
			if got := err == nil; got != tt.wantOK {
				t.Errorf("New() error = %v, want ok = %v", err, tt.wantOK)
			}
		})
	}
	// Two workers on one registry with one prefix collide: a mistake of
	// the program, as registering one HTTP pattern twice is.
	reg := prometheus.NewRegistry()
	o := complete()
	o.Registerer = reg
	if _, err := worker.New(o); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("New registered the same metrics twice without a panic")
		}
	}()
	worker.New(o)
}

// nopJS stands in for JetStream where New only checks it is set.
type nopJS struct{ jetstream.JetStream }

// A command whose every delivery dies before Handle returns (here a panic,
// which the policy Naks) still ends as failed, from the server's
// max-deliveries advisory, and leaves the work queue.
func TestDeliveriesExhausted(t *testing.T) {
	var runs atomic.Int32
	s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		runs.Add(1)
		panic("the worker dies")
	}, nil)
	cmd := command(contract.MethodLocalCopy)
	s.submit(t, cmd)
	checkEvents(t, s, cmd, []summary{
		{Type: contract.EventStarted, Attempt: 1},
		{Type: contract.EventStarted, Attempt: 2},
		{Type: contract.EventFailed, Attempt: 2, Code: contract.CodeRetriesExhausted},
	})
	if got := runs.Load(); got != 2 {
		t.Errorf("work ran %d times, want 2 (MaxDeliver)", got)
	}
	testenv.Eventually(t, 15*time.Second, "1 failed request counted", func() bool {
		return counter(t, s.reg, "staging_test_requests_total", "local_copy", "failed") == 1
	})
	for name, labels := range map[string]map[string]string{
		"staging_test_deliveries_exhausted_total": {"method": "local_copy"},
		"staging_test_failures_total":             {"method": "local_copy", "outcome": "failed", "code": "retries_exhausted"},
	} {
		if got := series(t, s.reg, name, labels); got != 1 {
			t.Errorf("%s%v = %v, want 1", name, labels, got)
		}
	}
}

// A command is not handed out while every slot is busy: one waiting for a
// slot gets no InProgress, would time out unseen and be redelivered, and
// both of its deliveries would then run at once.
func TestNoCommandWaitsForASlot(t *testing.T) {
	const ackWait = time.Second
	var mu sync.Mutex
	calls := map[string]int{}
	var running, most atomic.Int32
	var slow [2]contract.Command
	s := start(t, func(ctx context.Context, cmd contract.Command, _ *worker.Reporter) (worker.Result, error) {
		mu.Lock()
		calls[cmd.ID]++
		mu.Unlock()
		if cmd.ID == slow[0].ID || cmd.ID == slow[1].ID {
			// Long work, kept alive by InProgress, while a third command
			// would wait for a slot for more than its AckWait.
			time.Sleep(3 * ackWait)
		} else {
			n := running.Add(1)
			defer running.Add(-1)
			if n > most.Load() {
				most.Store(n)
			}
			time.Sleep(ackWait / 2)
		}
		return worker.Result{Outcome: contract.OutcomeStaged}, nil
	}, func(o *worker.Options) { o.AckWait, o.MaxDeliver, o.Concurrency = ackWait, 5, 2 })
	for i := range slow {
		slow[i] = command(contract.MethodLocalCopy)
		s.submit(t, slow[i])
	}
	testenv.Eventually(t, 15*time.Second, "both slots busy", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return calls[slow[0].ID] == 1 && calls[slow[1].ID] == 1
	})
	third := command(contract.MethodLocalCopy)
	s.submit(t, third)
	var attempts []int
	for _, ev := range s.events(t, third.ID) {
		attempts = append(attempts, ev.Attempt)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := calls[third.ID]; got != 1 {
		t.Errorf("the third command was worked on %d times, want 1", got)
	}
	if diff := cmp.Diff(attempts, []int{1, 1}); diff != "" {
		t.Errorf("attempts of the third command's events (-got +want):\n%s", diff)
	}
	if got := most.Load(); got != 1 {
		t.Errorf("%d deliveries of the third command ran at once, want 1", got)
	}
}

// A command whose request has already ended (its acknowledgement lost, or
// published again after the deduplication window) is acknowledged without
// any work or event: the last event stays the request's state.
func TestEndedRequestIsNotWorkedOnAgain(t *testing.T) {
	tests := []struct {
		last contract.EventType
		want []contract.EventType
	}{
		{last: contract.EventSucceeded, want: []contract.EventType{contract.EventSucceeded}},
		{last: contract.EventFailed, want: []contract.EventType{contract.EventFailed}},
		{last: contract.EventRejected, want: []contract.EventType{contract.EventRejected}},
		{last: contract.EventCancelled, want: []contract.EventType{contract.EventCancelled}},
	}
	for _, tt := range tests {
		t.Run(string(tt.last), func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			s := start(t, func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
				calls.Add(1)
				return worker.Result{Outcome: contract.OutcomeStaged}, nil
			}, nil)
			cmd := command(contract.MethodLocalCopy)
			// The same command published again once the deduplication
			// window had passed: made that long ago.
			cmd.RequestedAt = time.Now().Add(-contract.DedupWindow - time.Minute).UTC()
			ev := contract.EventFor(cmd, tt.last)
			ev.ID, ev.Time, ev.Source, ev.Attempt = uuid.NewString(), time.Now().UTC(), "test-worker", 1
			switch tt.last {
			case contract.EventSucceeded:
				ev.Outcome, ev.Bytes, ev.Files = contract.OutcomeStaged, 42, 1
			case contract.EventFailed, contract.EventRejected:
				ev.Error = contract.Errorf(contract.CodeNotFound, "gone")
			case contract.EventCancelled:
				ev.CancelledBy, ev.Error = "alice", contract.Errorf(contract.CodeCancelled, "cancelled by alice")
			}
			if err := bus.PublishEvent(t.Context(), s.js, ev); err != nil {
				t.Fatal(err)
			}
			s.submit(t, cmd)
			checkEventTypes(t, s.events(t, cmd.ID), tt.want)
			if got := calls.Load(); got != 0 {
				t.Errorf("work ran %d times, want 0", got)
			}
		})
	}
}

// Every delivery that may repeat a command is checked against the request's
// last event, not only a command published again after the deduplication
// window: a redelivery, and a copy the server did not deduplicate because it
// carried no message id.
func TestRepeatedCommandsAreChecked(t *testing.T) {
	succeeded := func(t *testing.T, js jetstream.JetStream, cmd contract.Command) {
		t.Helper()
		ev := contract.EventFor(cmd, contract.EventSucceeded)
		ev.ID, ev.Time, ev.Source, ev.Attempt = uuid.NewString(), time.Now().UTC(), "test-worker", 1
		ev.Outcome = contract.OutcomeStaged
		if err := bus.PublishEvent(context.Background(), js, ev); err != nil {
			t.Error(err)
		}
	}
	tests := []struct {
		name string
		// arrive publishes cmd, whose request has ended or ends during
		// its first delivery's work, which then fails for the time being.
		arrive func(t *testing.T, s *system, cmd contract.Command)
		// endsInWork: the first delivery is worked on; the request ends
		// meanwhile and the command is redelivered.
		endsInWork bool
		want       []contract.EventType
	}{{
		name: "redelivered",
		arrive: func(t *testing.T, s *system, cmd contract.Command) {
			s.submit(t, cmd)
		},
		endsInWork: true,
		want:       []contract.EventType{contract.EventStarted, contract.EventSucceeded},
	}, {
		name: "published again without a message id",
		arrive: func(t *testing.T, s *system, cmd contract.Command) {
			succeeded(t, s.js, cmd)
			s.publish(t, contract.MethodLocalCopy, cmd)
		},
		want: []contract.EventType{contract.EventSucceeded},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			var s *system
			s = start(t, func(_ context.Context, cmd contract.Command, _ *worker.Reporter) (worker.Result, error) {
				if calls.Add(1) == 1 && tt.endsInWork {
					// As a delivery whose acknowledgement was lost.
					succeeded(t, s.js, cmd)
					return worker.Result{}, contract.Errorf(contract.CodeUnavailable, "for now")
				}
				return worker.Result{Outcome: contract.OutcomeStaged}, nil
			}, func(o *worker.Options) { o.MaxDeliver = 3 })
			cmd := command(contract.MethodLocalCopy)
			tt.arrive(t, s, cmd)
			checkEventTypes(t, s.events(t, cmd.ID), tt.want)
			want := int32(0)
			if tt.endsInWork {
				want = 1
			}
			if got := calls.Load(); got != want {
				t.Errorf("work ran %d times, want %d", got, want)
			}
		})
	}
}

// checkEventTypes reports where the types of evs differ from want.
func checkEventTypes(t *testing.T, evs []contract.Event, want []contract.EventType) {
	t.Helper()
	got := make([]contract.EventType, len(evs))
	for i, ev := range evs {
		got[i] = ev.Type
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("events (-got +want):\n%s", diff)
	}
}
