package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
)

func TestSubmitPublishesCommandThenQueued(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	resp := e.do(http.MethodPost, "/api/v1/stagings", validBody,
		"traceparent", "00-"+traceID+"-00f067aa0ba902b7-01",
		"X-Request-Id", "client-req-1")
	if resp.status != http.StatusAccepted {
		t.Fatalf("status = %d, want 202: %s", resp.status, resp.body)
	}
	body := resp.json(t)
	id, _ := body["id"].(string)
	if id == "" {
		t.Fatalf("no id in %s", resp.body)
	}
	if diff := cmp.Diff(body, map[string]any{"id": id, "status": "queued", "status_url": "/api/v1/stagings/" + id}); diff != "" {
		t.Errorf("body (-got +want):\n%s", diff)
	}
	if got := resp.header.Get("Location"); got != "/api/v1/stagings/"+id {
		t.Errorf("Location = %q", got)
	}
	if got := resp.header.Get("X-Request-Id"); got != "client-req-1" {
		t.Errorf("X-Request-Id = %q, want the caller's", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg, err := e.stream(ctx, contract.StreamRequests).GetLastMsgForSubject(ctx, contract.RequestSubject(contract.MethodLocalCopy))
	if err != nil {
		t.Fatalf("command not on the stream: %v", err)
	}
	cmd, err := contract.DecodeCommand(msg.Data)
	if err != nil {
		t.Fatalf("published command does not validate: %v", err)
	}
	if cmd.RequestedAt.IsZero() {
		t.Error("requested_at not set")
	}
	cmd.RequestedAt = time.Time{}
	want := contract.Command{
		SpecVersion: contract.SpecVersion, ID: id, Method: contract.MethodLocalCopy, Username: "alice",
		LocalPathOnStorage: "/mnt/storage_a/file.fits", RelativePath: "data/file.fits", Origin: "gateway",
	}
	if diff := cmp.Diff(cmd, want); diff != "" {
		t.Errorf("command (-got +want):\n%s", diff)
	}
	if got := msg.Header.Get(jetstream.MsgIDHeader); got != id {
		t.Errorf("Nats-Msg-Id = %q, want %q", got, id)
	}
	if got := msg.Header.Get("traceparent"); !strings.Contains(got, traceID) {
		t.Errorf("command traceparent = %q, want the caller's trace %s", got, traceID)
	}

	ev, ok := e.lastEvent(id)
	if !ok {
		t.Fatal("no queued event")
	}
	if ev.Type != contract.EventQueued || ev.Source != "gateway" || ev.Username != "alice" || ev.TraceID != traceID {
		t.Errorf("queued event = %+v", ev)
	}
}

// A worker faster than the gateway's queued event must not be hidden by it:
// the current state stays the worker's.
func TestQueuedNeverOverwritesWorkerState(t *testing.T) {
	e := newEnv(t, gateway.Config{StageWaitTimeout: 10 * time.Second})
	var mu sync.Mutex
	var ids []string
	e.startWorker(func(cmd contract.Command) contract.Event {
		mu.Lock()
		ids = append(ids, cmd.ID)
		mu.Unlock()
		return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged}
	})
	const n = 30
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp := e.do(http.MethodPost, "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`)
			if resp.status != http.StatusOK {
				t.Errorf("status = %d: %s", resp.status, resp.body)
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != n {
		t.Fatalf("worker saw %d commands, want %d", len(ids), n)
	}
	for _, id := range ids {
		got := e.do(http.MethodGet, "/api/v1/stagings/"+id, "").json(t)["status"]
		if got != "succeeded" {
			t.Errorf("request %s: status %v, want succeeded", id, got)
		}
	}
}

func TestBadInput(t *testing.T) {
	big := `{"method":"local_copy","username":"alice","local_path_on_storage":"` + strings.Repeat("a", 2048) + `","relative_path":"x"}`
	tests := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		wantCode   contract.Code
		// recorded: the request got an id and a rejected event.
		recorded bool
	}{
		{"native unknown method", "/api/v1/stagings", `{"method":"scp","username":"alice","local_path_on_storage":"a","relative_path":"b"}`, 400, contract.CodeInvalidMethod, true},
		{"native method not allowed", "/api/v1/stagings", `{"method":"jupyter_copy","username":"alice","local_path_on_storage":"a","relative_path":"b"}`, 400, contract.CodeMethodNotAllowed, true},
		{"native invalid username", "/api/v1/stagings", `{"method":"local_copy","username":"Bad.User","local_path_on_storage":"a","relative_path":"b"}`, 400, contract.CodeInvalidUsername, true},
		{"native missing field", "/api/v1/stagings", `{"method":"local_copy","username":"alice","local_path_on_storage":"a"}`, 422, contract.CodeMissingField, true},
		{"native target climbs", "/api/v1/stagings", `{"method":"local_copy","username":"alice","local_path_on_storage":"a","relative_path":"../bob/x"}`, 400, contract.CodeOutsideUserArea, true},
		{"native malformed JSON", "/api/v1/stagings", `{"method":`, 422, contract.CodeMalformed, false},
		{"native wrong type", "/api/v1/stagings", `{"method":5}`, 422, contract.CodeMalformed, false},
		{"native no body", "/api/v1/stagings", ``, 422, contract.CodeMissingField, false},
		{"native body too large", "/api/v1/stagings", big, 413, contract.CodeBodyTooLarge, false},
		{"seed unknown method", "/stage_data?method=symlink_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`, 400, contract.CodeInvalidMethod, true},
		{"seed method not allowed", "/stage-data/?method=jupyter_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`, 400, contract.CodeMethodNotAllowed, true},
		{"seed invalid username", "/stage_data?method=local_copy&username=../root", `{"data":{"local_path_on_storage":"a","relative_path":"b"}}`, 400, contract.CodeInvalidUsername, true},
		{"seed missing method", "/stage_data?username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`, 422, contract.CodeMissingField, true},
		{"seed missing field", "/stage_data?method=local_copy&username=alice", `{"data":{"relative_path":"b"}}`, 422, contract.CodeMissingField, true},
		{"seed malformed JSON", "/stage_data?method=local_copy&username=alice", `not json`, 422, contract.CodeMalformed, false},
		{"seed no body", "/stage-data/?method=local_copy&username=alice", ``, 422, contract.CodeMissingField, false},
		{"seed body too large", "/stage_data?method=local_copy&username=alice", big, 413, contract.CodeBodyTooLarge, false},
	}
	e := newEnv(t, gateway.Config{AllowedMethods: []string{"local_copy", "direct_download"}, MaxBodyBytes: 1024})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodPost, tt.path, tt.body)
			if resp.status != tt.wantStatus {
				t.Errorf("status = %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
			body := resp.json(t)
			if got := body["code"]; got != string(tt.wantCode) {
				t.Errorf("code = %v, want %s", got, tt.wantCode)
			}
			if d, _ := body["detail"].(string); d == "" {
				t.Error("no detail")
			}
			if got := body["request_id"]; got == nil || got != resp.header.Get("X-Request-Id") {
				t.Errorf("request_id = %v, X-Request-Id = %q", got, resp.header.Get("X-Request-Id"))
			}
			id, _ := body["id"].(string)
			if !tt.recorded {
				if id != "" {
					t.Errorf("id %q given for a request that was never recorded", id)
				}
				return
			}
			ev, ok := e.lastEvent(id)
			if !ok {
				t.Fatalf("no rejected event for id %q", id)
			}
			if ev.Type != contract.EventRejected || ev.Error == nil || ev.Error.Code != tt.wantCode || ev.Source != "gateway" {
				t.Errorf("event = %+v, want rejected with %s", ev, tt.wantCode)
			}
		})
	}
	if n := len(e.commands()); n != 0 {
		t.Errorf("%d commands published for bad input", n)
	}
}

func TestNATSDownAnswers503(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	e.srv.Shutdown()
	testenv.Eventually(t, 5*time.Second, "the gateway's connection to notice the shutdown", func() bool {
		return e.gwNC.Status() != nats.CONNECTED
	})
	tests := []struct {
		name, method, path, body string
	}{
		{"native submit", http.MethodPost, "/api/v1/stagings", validBody},
		{"seed submit", http.MethodPost, "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`},
		{"get", http.MethodGet, "/api/v1/stagings/some-id", ""},
		{"list", http.MethodGet, "/api/v1/stagings?username=alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(tt.method, tt.path, tt.body)
			if resp.status != http.StatusServiceUnavailable {
				t.Errorf("status = %d, want 503: %s", resp.status, resp.body)
			}
			body := resp.json(t)
			if body["code"] != "unavailable" {
				t.Errorf("code = %v, want unavailable", body["code"])
			}
			if d, _ := body["detail"].(string); !strings.Contains(d, "unreachable") && !strings.Contains(d, "did not answer") {
				t.Errorf("detail %q does not say what is unreachable", d)
			}
		})
	}
}

func TestGetReadsLastEvent(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	cmd := contract.Command{
		SpecVersion: contract.SpecVersion, ID: "req-1", Method: contract.MethodLocalCopy, Username: "alice",
		LocalPathOnStorage: "/mnt/a/f.fits", RelativePath: "data/f.fits", Origin: "gateway",
	}
	publish := func(id string, t contract.EventType, change func(*contract.Event)) {
		ev := contract.EventFor(cmd, t)
		ev.ID, ev.Time, ev.Source = id, at, "stager"
		change(&ev)
		e.publishEvent(ev)
	}
	publish("e1", contract.EventQueued, func(*contract.Event) {})
	publish("e2", contract.EventStarted, func(*contract.Event) {})
	publish("e3", contract.EventSucceeded, func(ev *contract.Event) {
		ev.Outcome, ev.Bytes, ev.Files, ev.Message = contract.OutcomeStaged, 2880, 1, "copied"
	})
	got := e.do(http.MethodGet, "/api/v1/stagings/req-1", "")
	if got.status != http.StatusOK {
		t.Fatalf("status = %d: %s", got.status, got.body)
	}
	want := map[string]any{
		"id": "req-1", "status": "succeeded", "method": "local_copy", "username": "alice",
		"local_path_on_storage": "/mnt/a/f.fits", "relative_path": "data/f.fits",
		"outcome": "staged", "message": "copied", "bytes": 2880.0, "files": 1.0,
		"updated_at": "2026-11-27T10:00:00Z",
	}
	if diff := cmp.Diff(got.json(t), want); diff != "" {
		t.Errorf("state (-got +want):\n%s", diff)
	}

	// A request by DID whose resolution is its last event is running,
	// and says what the DID was resolved into.
	byDID := cmd
	cmd.ID, cmd.LocalPathOnStorage, cmd.DID = "req-did", "", "testsrc:ds1"
	publish("d1", contract.EventStarted, func(*contract.Event) {})
	publish("d2", contract.EventResolved, func(ev *contract.Event) {
		ev.Resolved = &contract.Resolved{Files: 2, Bytes: 9, Part: 1, Parts: 1, Paths: []string{"testsrc/a/file1", "testsrc/b/x"}}
		ev.Message = "testsrc:ds1 resolved into 2 files (9 bytes); part 1 of 1"
	})
	body := e.do(http.MethodGet, "/api/v1/stagings/req-did", "").json(t)
	if body["status"] != "running" || body["did"] != "testsrc:ds1" || body["message"] != "testsrc:ds1 resolved into 2 files (9 bytes); part 1 of 1" {
		t.Errorf("state after a resolved event = %v", body)
	}
	cmd = byDID

	cmd.ID = "req-2"
	publish("f1", contract.EventFailed, func(ev *contract.Event) {
		ev.Error = contract.Errorf(contract.CodeSourceNotFound, "no such file")
	})
	body = e.do(http.MethodGet, "/api/v1/stagings/req-2", "").json(t)
	if diff := cmp.Diff(body["error"], map[string]any{"code": "source_not_found", "detail": "no such file"}); diff != "" || body["status"] != "failed" {
		t.Errorf("failed state = %v (error diff %s)", body, diff)
	}
}

func TestGetFallsBackToAudit(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sub := answer(e, contract.SubjectAuditGet, func(req contract.AuditGetRequest) contract.AuditGetReply {
		if req.ID == "old-did" {
			return contract.AuditGetReply{Record: &contract.Record{
				ID: "old-did", Method: contract.MethodLocalCopy, Username: "bob", DID: "testsrc:ds1", RelativePath: "ds1",
				Status: contract.StatusSucceeded, Outcome: contract.OutcomeStaged, Bytes: 9, Files: 2,
				CreatedAt: created, UpdatedAt: created,
			}}
		}
		if req.ID == "old-expired" {
			expires := time.Date(2026, 1, 3, 3, 4, 5, 0, time.UTC)
			return contract.AuditGetReply{Record: &contract.Record{
				ID: "old-expired", Method: contract.MethodLocalCopy, Username: "bob", LocalPathOnStorage: "/a", RelativePath: "b",
				Status: contract.StatusExpired, Outcome: contract.OutcomeStaged, Bytes: 9, Files: 1,
				ExpiresAt: &expires, CreatedAt: created, UpdatedAt: expires,
			}}
		}
		if req.ID != "old-1" {
			return contract.AuditGetReply{Error: contract.Errorf(contract.CodeNotFound, "no request %s", req.ID)}
		}
		return contract.AuditGetReply{Record: &contract.Record{
			ID: "old-1", Method: contract.MethodLocalSymlink, Username: "bob", LocalPathOnStorage: "/a", RelativePath: "b",
			Status: contract.StatusFailed, ErrorCode: contract.CodeTargetConflict, ErrorReason: "exists",
			CreatedAt: created, UpdatedAt: created,
		}}
	})
	tests := []struct {
		name       string
		id         string
		wantStatus int
		want       map[string]any
	}{
		{"from the audit", "old-1", 200, map[string]any{
			"id": "old-1", "status": "failed", "method": "local_symlink", "username": "bob",
			"local_path_on_storage": "/a", "relative_path": "b", "bytes": 0.0, "files": 0.0,
			"error":      map[string]any{"code": "target_conflict", "detail": "exists"},
			"created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
		}},
		{"by did from the audit", "old-did", 200, map[string]any{
			"id": "old-did", "status": "succeeded", "method": "local_copy", "username": "bob",
			"local_path_on_storage": "", "did": "testsrc:ds1", "relative_path": "ds1", "outcome": "staged", "bytes": 9.0, "files": 2.0,
			"created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
		}},
		{"expired, from the audit", "old-expired", 200, map[string]any{
			"id": "old-expired", "status": "expired", "method": "local_copy", "username": "bob",
			"local_path_on_storage": "/a", "relative_path": "b", "outcome": "staged", "bytes": 9.0, "files": 1.0,
			"expires_at": "2026-01-03T03:04:05Z", "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-03T03:04:05Z",
		}},
		{"unknown", "nobody-knows", 404, nil},
		{"invalid id", "bad.id", 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/api/v1/stagings/"+tt.id, "")
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
			body := resp.json(t)
			switch tt.wantStatus {
			case 200:
				if diff := cmp.Diff(body, tt.want); diff != "" {
					t.Errorf("state (-got +want):\n%s", diff)
				}
			case 404:
				if body["code"] != "not_found" {
					t.Errorf("code = %v, want not_found", body["code"])
				}
			case 400:
				if body["code"] != "invalid_id" {
					t.Errorf("code = %v, want invalid_id", body["code"])
				}
			}
		})
	}

	// With no audit answering, the gateway says so instead of "not found".
	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	resp := e.do(http.MethodGet, "/api/v1/stagings/old-1", "")
	if resp.status != http.StatusServiceUnavailable || resp.json(t)["code"] != "unavailable" {
		t.Errorf("without audit: %d %s, want 503 unavailable", resp.status, resp.body)
	}
}

func TestListAsksTheAudit(t *testing.T) {
	e := newEnv(t, gateway.Config{})
	got := make(chan contract.AuditListRequest, 1)
	expires := time.Date(2026, 1, 3, 3, 4, 5, 0, time.UTC)
	answer(e, contract.SubjectAuditList, func(req contract.AuditListRequest) contract.AuditListReply {
		got <- req
		return contract.AuditListReply{
			Items: []contract.Record{
				{ID: "r1", Method: contract.MethodLocalCopy, Username: "alice", DID: "testsrc:ds1", Status: contract.StatusFailed},
				{ID: "r0", Method: contract.MethodLocalCopy, Username: "alice", Status: contract.StatusSucceeded, ExpiresAt: &expires},
			},
			NextCursor: "c2",
		}
	})
	resp := e.do(http.MethodGet, "/api/v1/stagings?username=alice&status=failed&method=local_copy&since=2026-01-01T00:00:00Z&limit=10&cursor=c1", "")
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d: %s", resp.status, resp.body)
	}
	wantQuery := contract.AuditListRequest{
		Username: "alice", Status: contract.StatusFailed, Method: contract.MethodLocalCopy,
		Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Limit: 10, Cursor: "c1",
	}
	if diff := cmp.Diff(<-got, wantQuery); diff != "" {
		t.Errorf("query (-got +want):\n%s", diff)
	}
	page := decode[contract.AuditListReply](t, resp)
	if len(page.Items) != 2 || page.Items[0].ID != "r1" || page.Items[0].DID != "testsrc:ds1" || page.NextCursor != "c2" ||
		page.Items[1].ExpiresAt == nil || !page.Items[1].ExpiresAt.Equal(expires) {
		t.Errorf("page = %+v", page)
	}

	for _, q := range []string{"limit=0", "limit=x", "status=done", "method=scp", "username=Bad.User", "since=yesterday"} {
		t.Run(q, func(t *testing.T) {
			resp := e.do(http.MethodGet, "/api/v1/stagings?"+q, "")
			if resp.status != http.StatusBadRequest {
				t.Errorf("status = %d, want 400: %s", resp.status, resp.body)
			}
		})
	}
}
