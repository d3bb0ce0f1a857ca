package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
)

// running is a started all-in-one for one test.
type running struct {
	*system
	spans *tracetest.InMemoryExporter
	// bearer, when set, goes with every HTTP request the test sends.
	bearer string
}

// startSystem starts the all-in-one on a temporary data directory, a free
// HTTP port and, unless natsURL is set, an embedded NATS on a free port;
// args are further flags.
func startSystem(t *testing.T, natsURL, mysqlDSN string, args ...string) running {
	t.Helper()
	t.Setenv("STAGING_LOG_LEVEL", "warn")
	cfg, err := loadConfig(append([]string{
		"-data-dir", t.TempDir(),
		"-http-addr", "127.0.0.1:0",
		"-nats-listen", "127.0.0.1:-1",
		"-nats-url", natsURL,
		"-mysql-dsn", mysqlDSN,
	}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := start(ctx, cfg, testLog{t})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	spans := tracetest.NewInMemoryExporter()
	sys.rt.TracerProvider.RegisterSpanProcessor(sdktrace.NewSimpleSpanProcessor(spans))
	t.Cleanup(func() {
		cancel()
		if err := sys.wait(); err != nil {
			t.Errorf("stagingd stopped with: %v", err)
		}
	})
	return running{system: sys, spans: spans}
}

// testLog sends the system's log lines to the test log, shown on failure.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func TestEndToEndEmbedded(t *testing.T) {
	endToEnd(t, startSystem(t, "", ""))
}

// TestEndToEndExternal runs the same flow against an external nats-server
// process and MariaDB/MySQL, as a site deploys it.
func TestEndToEndExternal(t *testing.T) {
	natsURL := natstest.External(t)
	dsn := testenv.MySQL(t)
	endToEnd(t, startSystem(t, natsURL, dsn))
}

func endToEnd(t *testing.T, sys running) {
	user := "alice"
	target := "e2e-" + uuid.NewString()[:8] + "/hello.txt"

	t.Run("native API stages a file", func(t *testing.T) {
		var sub struct {
			ID        string `json:"id"`
			Status    string `json:"status"`
			StatusURL string `json:"status_url"`
		}
		status := sys.postJSON(t, "/api/v1/stagings", map[string]string{
			"method": "local_copy", "username": user,
			"local_path_on_storage": sampleFile, "relative_path": target,
		}, &sub)
		if status != http.StatusAccepted || sub.ID == "" {
			t.Fatalf("POST /api/v1/stagings = %d %+v, want 202 with an id", status, sub)
		}
		got := sys.waitStatus(t, sub.ID, "succeeded")
		if got["method"] != "local_copy" || got["username"] != user {
			t.Errorf("GET /api/v1/stagings/%s = %v, want method local_copy and username %s", sub.ID, got, user)
		}
		staged := filepath.Join(sys.cfg.Stager.UserAreaRoot, user, filepath.FromSlash(target))
		data, err := os.ReadFile(staged)
		if err != nil {
			t.Fatalf("staged file: %v", err)
		}
		if string(data) != sampleContent {
			t.Errorf("staged content = %q, want %q", data, sampleContent)
		}
		if fi, err := os.Stat(staged); err != nil || fi.Mode().Perm() != 0o400 {
			t.Errorf("staged file mode = %v (%v), want 0400", fi.Mode().Perm(), err)
		}
		rec := sys.waitAudit(t, sub.ID, contract.StatusSucceeded)
		if rec.Origin != "gateway" || rec.Username != user || rec.Bytes != int64(len(sampleContent)) {
			t.Errorf("audit record = %+v, want origin gateway, user %s, %d bytes", rec, user, len(sampleContent))
		}
		sys.checkOneTrace(t, sub.ID)
	})

	t.Run("a staged item's lifetime ends in expired", func(t *testing.T) {
		var sub struct {
			ID string `json:"id"`
		}
		expiring := "e2e-" + uuid.NewString()[:8] + "/expiring.txt"
		status := sys.postJSON(t, "/api/v1/stagings", map[string]any{
			"method": "local_copy", "username": user,
			"local_path_on_storage": sampleFile, "relative_path": expiring, "lifetime": 1,
		}, &sub)
		if status != http.StatusAccepted {
			t.Fatalf("POST /api/v1/stagings with a lifetime = %d, want 202", status)
		}
		ok := sys.waitStatus(t, sub.ID, "succeeded")
		if _, err := time.Parse(time.RFC3339, fmt.Sprint(ok["expires_at"])); err != nil {
			t.Errorf("succeeded state %v has no expires_at: %v", ok, err)
		}
		sys.waitStatus(t, sub.ID, "expired")
		if _, err := os.Lstat(filepath.Join(sys.cfg.Stager.UserAreaRoot, user, filepath.FromSlash(expiring))); !os.IsNotExist(err) {
			t.Errorf("the expired item is still in the user's area (%v)", err)
		}
		if _, err := os.Stat(filepath.Join(sys.cfg.Stager.SourceRoot, filepath.FromSlash(sampleFile))); err != nil {
			t.Errorf("the source is gone: %v", err)
		}
		rec := sys.waitAudit(t, sub.ID, contract.StatusExpired)
		if rec.Outcome != contract.OutcomeStaged || rec.Bytes != int64(len(sampleContent)) {
			t.Errorf("audit record = %+v, want the staging's outcome and bytes kept", rec)
		}
	})

	t.Run("seed API waits for the outcome", func(t *testing.T) {
		for _, path := range []string{"/stage_data", "/stage-data/"} {
			var out map[string]any
			q := "?method=local_copy&username=bob"
			body := map[string]any{"data": map[string]string{
				"local_path_on_storage": sampleFile,
				"relative_path":         strings.Trim(path, "/") + "/" + target,
			}}
			status := sys.postJSON(t, path+q, body, &out)
			if status != http.StatusOK || out["status"] != "success" {
				t.Errorf("POST %s = %d %v, want 200 status success", path, status, out)
			}
		}
		// The same target again is already there: still success, nothing touched.
		var again map[string]any
		status := sys.postJSON(t, "/stage_data?method=local_copy&username=bob", map[string]string{
			"local_path_on_storage": sampleFile, "relative_path": "stage_data/" + target,
		}, &again)
		if status != http.StatusOK || again["status"] != "success" {
			t.Errorf("repeated POST /stage_data = %d %v, want 200 success", status, again)
		}
	})

	t.Run("command published straight on NATS", func(t *testing.T) {
		_, js := natstest.Connect(t, sys.natsURL)
		id := uuid.NewString()
		// What another system sends, following docs/messages.md.
		cmd := []byte(`{"spec_version":"1.0","id":"` + id + `","method":"local_copy","username":"carol",` +
			`"local_path_on_storage":"sample/tree","relative_path":"` + target + `-tree","origin":"nats-cli"}`)
		if _, err := js.Publish(t.Context(), contract.RequestSubject(contract.MethodLocalCopy), cmd, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
		sys.waitStatus(t, id, "succeeded")
		rec := sys.waitAudit(t, id, contract.StatusSucceeded)
		if rec.Origin != "nats-cli" || rec.Files != 2 {
			t.Errorf("audit record = %+v, want origin nats-cli and 2 files", rec)
		}
	})

	t.Run("jupyter_copy on NATS without a hub is rejected and recorded", func(t *testing.T) {
		_, js := natstest.Connect(t, sys.natsURL)
		id := uuid.NewString()
		cmd := []byte(`{"spec_version":"1.0","id":"` + id + `","method":"jupyter_copy","username":"carol",` +
			`"local_path_on_storage":"sample/hello.txt","relative_path":"` + target + `-jupyter","origin":"nats-cli"}`)
		if _, err := js.Publish(t.Context(), contract.RequestSubject(contract.MethodJupyterCopy), cmd, jetstream.WithMsgID(id)); err != nil {
			t.Fatal(err)
		}
		rec := sys.waitAudit(t, id, contract.StatusRejected)
		if rec.ErrorCode != contract.CodeMethodNotAllowed {
			t.Errorf("audit record = %+v, want rejected with method_not_allowed", rec)
		}
	})

	t.Run("bad input is refused with a code and recorded", func(t *testing.T) {
		tests := []struct {
			name     string
			path     string
			body     string
			status   int
			code     string
			recorded bool
		}{
			{"unknown method", "/api/v1/stagings", `{"method":"teleport","username":"alice","local_path_on_storage":"a","relative_path":"b"}`, 400, "invalid_method", true},
			{"invalid username", "/api/v1/stagings", `{"method":"local_copy","username":"../root","local_path_on_storage":"a","relative_path":"b"}`, 400, "invalid_username", true},
			{"missing field", "/api/v1/stagings", `{"method":"local_copy","username":"alice"}`, 422, "missing_field", true},
			{"malformed JSON", "/api/v1/stagings", `{"method":`, 422, "malformed", false},
			{"body over 1 MiB", "/api/v1/stagings", `{"method":"local_copy","username":"alice","relative_path":"` + strings.Repeat("a", 1<<20) + `"}`, 413, "body_too_large", false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				resp, err := http.Post(sys.httpURL+tt.path, "application/json", strings.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var out struct {
					Code   string `json:"code"`
					Detail string `json:"detail"`
					ID     string `json:"id"` // the staging request's id, when it got one
				}
				if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
					t.Fatalf("error body is not JSON: %v", err)
				}
				if resp.StatusCode != tt.status || out.Code != tt.code || out.Detail == "" {
					t.Fatalf("POST %s = %d %+v, want %d code %s with a detail", tt.path, resp.StatusCode, out, tt.status, tt.code)
				}
				if tt.recorded {
					if out.ID == "" {
						t.Fatal("rejected request has no id")
					}
					rec := sys.waitAudit(t, out.ID, contract.StatusRejected)
					if string(rec.ErrorCode) != tt.code {
						t.Errorf("audit error_code = %q, want %q", rec.ErrorCode, tt.code)
					}
				}
			})
		}
	})

	t.Run("missing source fails with source_not_found", func(t *testing.T) {
		var out map[string]any
		status := sys.postJSON(t, "/stage_data?method=local_copy&username=alice", map[string]string{
			"local_path_on_storage": "no/such/file.fits", "relative_path": "x.fits",
		}, &out)
		if status != http.StatusBadRequest || out["detail"] == nil {
			t.Errorf("POST /stage_data missing source = %d %v, want 400 with detail", status, out)
		}
	})
}

func (s running) postJSON(t *testing.T, path string, body, out any) int {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, s.httpURL+path, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.send(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("POST %s: answer is not JSON: %v", path, err)
	}
	return resp.StatusCode
}

// send sends req with the test's bearer token, if it has one.
func (s running) send(req *http.Request) (*http.Response, error) {
	if s.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+s.bearer)
	}
	return http.DefaultClient.Do(req)
}

// waitStatus polls GET /api/v1/stagings/{id} until it reports want.
func (s running) waitStatus(t *testing.T, id, want string) map[string]any {
	t.Helper()
	var last map[string]any
	testenv.Eventually(t, 20*time.Second, "request "+id+" to be "+want, func() bool {
		req, err := http.NewRequest(http.MethodGet, s.httpURL+"/api/v1/stagings/"+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.send(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		last = map[string]any{}
		if json.NewDecoder(resp.Body).Decode(&last) != nil {
			return false
		}
		if st, _ := last["status"].(string); st == "failed" || st == "rejected" {
			t.Fatalf("request %s ended %s: %v", id, st, last)
		}
		return last["status"] == want
	}, func() string { return jsonText(last) })
	return last
}

// waitAudit asks the audit over NATS until its record of id has status want.
func (s running) waitAudit(t *testing.T, id string, want contract.Status) contract.Record {
	t.Helper()
	var reply contract.AuditGetReply
	req, _ := json.Marshal(contract.AuditGetRequest{ID: id})
	testenv.Eventually(t, 20*time.Second, "audit record of "+id+" to be "+string(want), func() bool {
		msg, err := s.rt.NC.Request(contract.SubjectAuditGet, req, 2*time.Second)
		if err != nil {
			return false
		}
		reply = contract.AuditGetReply{}
		return json.Unmarshal(msg.Data, &reply) == nil && reply.Record != nil && reply.Record.Status == want
	}, func() string { return jsonText(reply) })
	return *reply.Record
}

// checkOneTrace asserts that the request's work is one trace with spans
// from the gateway, the stager and the audit.
func (s running) checkOneTrace(t *testing.T, requestID string) {
	t.Helper()
	var ev contract.Event
	stream, err := s.rt.JS.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), contract.EventSubject(requestID))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(msg.Data, &ev); err != nil || ev.TraceID == "" {
		t.Fatalf("last event %s has no trace id (%v)", msg.Data, err)
	}
	want := []string{"gateway", "stager", "audit"}
	var scopes map[string]bool
	testenv.Eventually(t, 20*time.Second, "spans of trace "+ev.TraceID+" from "+strings.Join(want, ", "), func() bool {
		scopes = map[string]bool{}
		for _, sp := range s.spans.GetSpans() {
			if sp.SpanContext.TraceID().String() == ev.TraceID {
				scopes[sp.InstrumentationScope.Name] = true
			}
		}
		for _, w := range want {
			if !scopes["skao-staging/"+w] {
				return false
			}
		}
		return true
	}, func() string { return jsonText(scopes) })
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
