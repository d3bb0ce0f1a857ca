package gateway_test

import (
	"net/http"
	"testing"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

// TestMethodNoWorkerTakesIsRefused checks that a method the site allows
// but no worker takes (no consumer of STAGING_REQUESTS filters its
// subject: a site without a jupyter-bridge) is refused at once with
// method_not_allowed and recorded, on every submission route, instead of
// being queued for good; a method a worker takes is still queued.
func TestMethodNoWorkerTakesIsRefused(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	// Only a stager: the stand-in worker takes every method.
	if err := e.js.DeleteConsumer(t.Context(), contract.StreamRequests, standInWorker.Durable); err != nil {
		t.Fatal(err)
	}
	stager := standInWorker
	stager.Durable, stager.FilterSubjects = contract.ConsumerStager, contract.RequestSubjects(contract.StagerMethods...)
	if _, err := bus.EnsureConsumer(t.Context(), e.js, stager); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, path, body string
	}{
		{"native", "/api/v1/stagings", `{"method":"jupyter_copy","username":"alice","local_path_on_storage":"a","relative_path":"b"}`},
		{"seed", "/stage_data?method=jupyter_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodPost, tt.path, tt.body)
			body := resp.json(t)
			if resp.status != http.StatusBadRequest || body["code"] != string(contract.CodeMethodNotAllowed) {
				t.Fatalf("got %d %s, want 400 method_not_allowed", resp.status, resp.body)
			}
			id, _ := body["id"].(string)
			ev, ok := e.lastEvent(id)
			if !ok || ev.Type != contract.EventRejected || ev.Error == nil || ev.Error.Code != contract.CodeMethodNotAllowed {
				t.Errorf("recorded: got %+v (found %v), want rejected with method_not_allowed", ev, ok)
			}
		})
	}
	t.Run("job", func(t *testing.T) {
		resp := e.do(http.MethodPost, "/api/v1/jobs", `{"items":[`+
			`{"method":"jupyter_copy","username":"alice","local_path_on_storage":"a","relative_path":"b"},`+
			`{"method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"c"}]}`)
		if resp.status != http.StatusAccepted {
			t.Fatalf("got %d %s, want 202", resp.status, resp.body)
		}
		items := decode[struct {
			Items []struct {
				ID     string          `json:"id"`
				Status contract.Status `json:"status"`
				Error  *contract.Error `json:"error"`
			} `json:"items"`
		}](t, resp).Items
		if len(items) != 2 || items[0].Status != contract.StatusRejected || items[0].Error == nil || items[0].Error.Code != contract.CodeMethodNotAllowed || items[1].Status != contract.StatusQueued {
			t.Fatalf("items: got %+v, want jupyter_copy rejected with method_not_allowed, local_copy queued", items)
		}
		if ev, ok := e.lastEvent(items[0].ID); !ok || ev.Type != contract.EventRejected {
			t.Errorf("jupyter_copy item recorded as %+v (found %v), want rejected", ev, ok)
		}
	})
	cmds := e.commands()
	if len(cmds) != 1 || cmds[0].Method != contract.MethodLocalCopy {
		t.Errorf("queued: got %+v, want only the local_copy item", cmds)
	}
}

// TestFullQueueIsRefused checks that a command the full STAGING_REQUESTS
// refuses is answered 503 queue_full, on every submission route, and
// recorded as rejected with that code: its caller learns that nothing was
// queued.
func TestFullQueueIsRefused(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	if err := bus.EnsureStreams(t.Context(), e.js, bus.StreamOptions{RequestsMaxMsgs: 1}); err != nil {
		t.Fatal(err)
	}
	if resp := e.do(http.MethodPost, "/api/v1/stagings", validBody); resp.status != http.StatusAccepted {
		t.Fatalf("first submission: got %d %s, want 202", resp.status, resp.body)
	}
	tests := []struct {
		name, path, body string
	}{
		{"native", "/api/v1/stagings", validBody},
		{"seed", "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodPost, tt.path, tt.body)
			body := resp.json(t)
			if resp.status != http.StatusServiceUnavailable || body["code"] != string(contract.CodeQueueFull) {
				t.Fatalf("got %d %s, want 503 queue_full", resp.status, resp.body)
			}
			id, _ := body["id"].(string)
			ev, ok := e.lastEvent(id)
			if !ok || ev.Type != contract.EventRejected || ev.Error == nil || ev.Error.Code != contract.CodeQueueFull {
				t.Errorf("recorded: got %+v (found %v), want rejected with queue_full", ev, ok)
			}
		})
	}
	t.Run("job", func(t *testing.T) {
		resp := e.do(http.MethodPost, "/api/v1/jobs", `{"items":[{"method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"j"}]}`)
		body := resp.json(t)
		if resp.status != http.StatusServiceUnavailable || body["code"] != string(contract.CodeQueueFull) {
			t.Fatalf("got %d %s, want 503 queue_full", resp.status, resp.body)
		}
	})
	if n := len(e.commands()); n != 1 {
		t.Errorf("queued: got %d commands, want the first only", n)
	}

	// A refusal is for now: the same submission under the same
	// Idempotency-Key is published once the queue has room.
	retries := []struct{ path, body string }{
		{"/api/v1/stagings", `{"method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"k"}`},
		{"/api/v1/jobs", `{"items":[{"method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"l"}]}`},
	}
	for _, r := range retries {
		if resp := e.do(http.MethodPost, r.path, r.body, "Idempotency-Key", "retry"); resp.status != http.StatusServiceUnavailable {
			t.Fatalf("%s while full: got %d %s, want 503", r.path, resp.status, resp.body)
		}
	}
	stream := e.stream(t.Context(), contract.StreamRequests)
	for _, r := range retries {
		if err := stream.Purge(t.Context()); err != nil {
			t.Fatal(err)
		}
		if resp := e.do(http.MethodPost, r.path, r.body, "Idempotency-Key", "retry"); resp.status != http.StatusAccepted {
			t.Errorf("%s repeated with room: got %d %s, want 202", r.path, resp.status, resp.body)
		}
		if n := len(e.commands()); n != 1 {
			t.Errorf("%s repeated with room: %d commands queued, want 1", r.path, n)
		}
	}
}
