package gateway_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/libs/worker"
	"github.com/skao/skao-staging/services/gateway"
)

// runWorker runs a real worker (libs/worker) for every method on the
// stand-in worker's consumer, one command at a time, whose work is stage.
func (e *env) runWorker(stage worker.StageFunc) {
	e.t.Helper()
	w, err := worker.New(worker.Options{
		Source: "test-worker", Methods: contract.MethodSet(contract.Methods), Stage: stage,
		JS: e.js, Log: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(), MetricPrefix: "staging_test",
		Durable: standInWorker.Durable, Concurrency: 1, AckWait: standInWorker.AckWait, MaxDeliver: standInWorker.MaxDeliver,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
	})
}

// busyWorker runs a worker whose work on a request with relative path
// "busy" lasts until the test ends, or until its cancel; any other
// request succeeds at once. ran counts the requests it worked on.
func (e *env) busyWorker(ran *atomic.Int32) {
	e.t.Helper()
	done := make(chan struct{})
	e.runWorker(func(ctx context.Context, cmd contract.Command, _ *worker.Reporter) (worker.Result, error) {
		ran.Add(1)
		if cmd.RelativePath != "busy" {
			return worker.Result{Outcome: contract.OutcomeStaged}, nil
		}
		select {
		case <-ctx.Done():
			return worker.Result{}, ctx.Err()
		case <-done:
			return worker.Result{Outcome: contract.OutcomeStaged}, nil
		}
	})
	// Before the worker's own cleanup waits for it.
	e.t.Cleanup(func() { close(done) })
}

func (e *env) submitted(r response) string {
	e.t.Helper()
	if r.status != http.StatusAccepted {
		e.t.Fatalf("submit: status %d: %s", r.status, r.body)
	}
	return decode[map[string]any](e.t, r)["id"].(string)
}

func (e *env) waitStatus(id string, want contract.EventType) {
	e.t.Helper()
	testenv.Eventually(e.t, 10*time.Second, "request "+id+" to be "+string(want), func() bool {
		ev, ok := e.lastEvent(id)
		return ok && ev.Type == want
	})
}

const busyBody = `{"method":"local_copy","username":"alice","local_path_on_storage":"/mnt/a/big.fits","relative_path":"busy"}`

// DELETE on a queued request ends it cancelled at once, naming who; its
// command, taken later, is never started.
func TestCancelQueuedOverREST(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	var ran atomic.Int32
	e.busyWorker(&ran)
	busy := e.submitted(e.do("POST", "/api/v1/stagings", busyBody))
	e.waitStatus(busy, contract.EventStarted)

	id := e.submitted(e.do("POST", "/api/v1/stagings", submitBody("alice")))
	r := e.do("DELETE", "/api/v1/stagings/"+id, "")
	if r.status != http.StatusOK {
		t.Fatalf("DELETE: status %d, want 200: %s", r.status, r.body)
	}
	if got := r.json(t)["status"]; got != "cancelled" {
		t.Errorf("status %v, want cancelled", got)
	}
	ev, _ := e.lastEvent(id)
	if ev.Type != contract.EventCancelled || ev.CancelledBy != "anonymous" {
		t.Errorf("last event %s by %q, want cancelled by anonymous (authentication off)", ev.Type, ev.CancelledBy)
	}
	// The busy request cancelled too, the worker takes the other command,
	// which it must not start.
	if r := e.do("DELETE", "/api/v1/stagings/"+busy, ""); r.status != http.StatusOK {
		t.Fatalf("DELETE running: status %d: %s", r.status, r.body)
	}
	testenv.Eventually(t, 10*time.Second, "the queue to empty", func() bool { return len(e.commands()) == 0 })
	if ev, _ := e.lastEvent(id); ev.Type != contract.EventCancelled {
		t.Errorf("after the worker took the command: last event %s, want cancelled", ev.Type)
	}
	if got := ran.Load(); got != 1 {
		t.Errorf("the worker worked on %d requests, want 1 (the busy one)", got)
	}
}

// DELETE on a running request stops its work within about a second and
// answers the cancelled state; a second DELETE answers 409.
func TestCancelRunningOverREST(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	var ran atomic.Int32
	e.busyWorker(&ran)
	id := e.submitted(e.do("POST", "/api/v1/stagings", busyBody))
	e.waitStatus(id, contract.EventStarted)
	began := time.Now()
	r := e.do("DELETE", "/api/v1/stagings/"+id, "")
	if r.status != http.StatusOK || r.json(t)["status"] != "cancelled" {
		t.Fatalf("DELETE: status %d: %s", r.status, r.body)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("cancel took %s, want about a second at most", took)
	}
	// The answer may come from the live event before the stream has it.
	e.waitStatus(id, contract.EventCancelled)
	r = e.do("DELETE", "/api/v1/stagings/"+id, "")
	if r.status != http.StatusConflict || r.json(t)["code"] != string(contract.CodeAlreadyFinished) {
		t.Errorf("second DELETE: status %d: %s, want 409 already_finished", r.status, r.body)
	}
}

// A request that has ended cannot be cancelled: 409 already_finished, and
// its state stays.
func TestCancelFinishedOverREST(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	e.startWorker(stagerFake)
	id := e.submitted(e.do("POST", "/api/v1/stagings", submitBody("alice")))
	e.waitStatus(id, contract.EventSucceeded)
	r := e.do("DELETE", "/api/v1/stagings/"+id, "")
	if r.status != http.StatusConflict || r.json(t)["code"] != string(contract.CodeAlreadyFinished) {
		t.Errorf("DELETE: status %d: %s, want 409 already_finished", r.status, r.body)
	}
	if ev, _ := e.lastEvent(id); ev.Type != contract.EventSucceeded {
		t.Errorf("last event %s, want succeeded", ev.Type)
	}
}

// With authentication on, a user cancels only their own requests: another
// user's is answered 404 as for GET; an admin cancels anyone's, and is
// named as who cancelled.
func TestCancelOnlyOwnRequests(t *testing.T) {
	file := tokensFile(t, "alice-token alice\nbob-token bob\nops-token ops admin\n")
	e := newEnv(t, gateway.Config{AuthMode: "tokens", AuthTokensFile: file})
	var ran atomic.Int32
	e.busyWorker(&ran)
	alice := []string{"Authorization", "Bearer alice-token"}
	busy := e.submitted(e.do("POST", "/api/v1/stagings", busyBody, alice...))
	e.waitStatus(busy, contract.EventStarted)
	mine := e.submitted(e.do("POST", "/api/v1/stagings", submitBody("alice"), alice...))
	other := e.submitted(e.do("POST", "/api/v1/stagings", submitBody("alice"), alice...))

	if r := e.do("DELETE", "/api/v1/stagings/"+mine, "", "Authorization", "Bearer bob-token"); r.status != http.StatusNotFound {
		t.Errorf("bob cancelling alice's: status %d: %s, want 404", r.status, r.body)
	}
	if ev, _ := e.lastEvent(mine); ev.Type != contract.EventQueued {
		t.Errorf("after bob's DELETE: last event %s, want queued", ev.Type)
	}
	if r := e.do("DELETE", "/api/v1/stagings/"+mine, "", alice...); r.status != http.StatusOK {
		t.Errorf("alice cancelling her own: status %d: %s", r.status, r.body)
	}
	if r := e.do("DELETE", "/api/v1/stagings/"+other, "", "Authorization", "Bearer ops-token"); r.status != http.StatusOK {
		t.Errorf("an admin cancelling alice's: status %d: %s", r.status, r.body)
	}
	for id, who := range map[string]string{mine: "alice", other: "ops"} {
		if ev, _ := e.lastEvent(id); ev.Type != contract.EventCancelled || ev.CancelledBy != who {
			t.Errorf("%s: last event %s by %q, want cancelled by %s", id, ev.Type, ev.CancelledBy, who)
		}
	}
}

// DELETE on a job cancels each unfinished item and leaves ended ones;
// the job then reports cancelled items.
func TestCancelJob(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	var ran atomic.Int32
	e.busyWorker(&ran)
	busy := e.submitted(e.do("POST", "/api/v1/stagings", busyBody))
	e.waitStatus(busy, contract.EventStarted)
	items := []string{item("alice", "a/1"), item("alice", "a/2"), item("alice", "a/3")}
	r := e.do("POST", "/api/v1/jobs", `{"items":[`+strings.Join(items, ",")+`]}`)
	if r.status != http.StatusAccepted {
		t.Fatalf("POST job: status %d: %s", r.status, r.body)
	}
	job := decode[jobAnswer](t, r)
	r = e.do("DELETE", "/api/v1/jobs/"+job.JobID, "")
	if r.status != http.StatusAccepted {
		t.Fatalf("DELETE job: status %d: %s", r.status, r.body)
	}
	if got := r.json(t); got["cancelling"] != float64(3) || got["finished"] != float64(0) {
		t.Errorf("DELETE job answered %s, want 3 cancelling, 0 finished", r.body)
	}
	view := finishedJob(t, e, job.StatusURL)
	if view.Status != "cancelled" || view.Counts["cancelled"] != 3 {
		t.Errorf("job %+v, want cancelled with 3 cancelled items", view)
	}
	if r := e.do("DELETE", "/api/v1/jobs/"+job.JobID, ""); r.status != http.StatusConflict {
		t.Errorf("DELETE again: status %d: %s, want 409", r.status, r.body)
	}
	if got := ran.Load(); got != 1 {
		t.Errorf("the worker worked on %d requests, want 1 (the busy one)", got)
	}
}
