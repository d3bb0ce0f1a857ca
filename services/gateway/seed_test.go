package gateway_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

func TestConfigEndpoints(t *testing.T) {
	e := newEnv(t, gateway.Config{
		AllowedMethods: []string{"local_copy", "direct_download"}, SourceRoot: "/mnt/storage_a", UserAreaRoot: "/users",
		StageWaitTimeout: 45 * time.Second,
	})
	tests := []struct {
		path string
		want map[string]any
	}{
		{"/config/", map[string]any{
			"source_storage_path": "/mnt/storage_a", "target_storage_path": "/users",
			"allowed_methods": []any{"local_copy", "direct_download"}, "stage_wait_timeout": "45s",
			"max_body_bytes": 1048576.0, "demo": false,
		}},
		{"/config/allowed-methods/", map[string]any{"allowed_methods": []any{"local_copy", "direct_download"}}},
		{"/api/v1/methods", map[string]any{"allowed_methods": []any{"local_copy", "direct_download"}}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp := e.do(http.MethodGet, tt.path, "")
			if resp.status != http.StatusOK {
				t.Fatalf("status = %d", resp.status)
			}
			if diff := cmp.Diff(resp.json(t), tt.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

// gatewayDemoLimit is api.MaxDemoFileBytes, as a client sees it.
const gatewayDemoLimit = 64 << 10

func TestCreateFile(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		e := newEnv(t, gateway.Config{SourceRoot: t.TempDir()})
		resp := e.do(http.MethodPost, "/create-file/", `{"path":"a.txt","content":"x"}`)
		if resp.status != http.StatusNotFound || resp.json(t)["code"] != "not_found" {
			t.Errorf("got %d %s, want 404 not_found", resp.status, resp.body)
		}
	})

	root := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "kept.txt"), []byte("site data"), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, gateway.Config{SourceRoot: root, Demo: true})
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"nested file", `{"path":"obs/1/a.txt","content":"hello"}`, 201, ""},
		{"climbs out", `{"path":"../a.txt","content":"x"}`, 400, "invalid_path"},
		{"absolute", `{"path":"/etc/x","content":"x"}`, 400, "invalid_path"},
		{"through a symlink", `{"path":"escape/a.txt","content":"x"}`, 400, "invalid_path"},
		{"through a symlink, nested", `{"path":"escape/b/c.txt","content":"x"}`, 400, "invalid_path"},
		{"existing file", `{"path":"kept.txt","content":"x"}`, 409, "target_conflict"},
		{"the file made before", `{"path":"obs/1/a.txt","content":"again"}`, 409, "target_conflict"},
		{"too large", fmt.Sprintf(`{"path":"big","content":%q}`, strings.Repeat("a", gatewayDemoLimit+1)), 413, "body_too_large"},
		{"malformed", `{"path":`, 422, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodPost, "/create-file/", tt.body)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
			if tt.wantCode != "" && resp.json(t)["code"] != tt.wantCode {
				t.Errorf("code = %v, want %s", resp.json(t)["code"], tt.wantCode)
			}
		})
	}
	got, err := os.ReadFile(filepath.Join(root, "obs/1/a.txt"))
	if err != nil || string(got) != "hello" {
		t.Errorf("created file = %q, %v", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(root, "kept.txt")); err != nil || string(got) != "site data" {
		t.Errorf("existing file = %q, %v; want it untouched", got, err)
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
		t.Errorf("something was written outside the root: %v %v", entries, err)
	}
}

func TestStageDataWaitsForOutcome(t *testing.T) {
	e := newEnv(t, gateway.Config{StageWaitTimeout: 10 * time.Second})
	e.startWorker(func(cmd contract.Command) contract.Event {
		switch cmd.RelativePath {
		case "present":
			return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeAlreadyPresent}
		case "missing":
			return contract.Event{Type: contract.EventFailed, Error: contract.Errorf(contract.CodeSourceNotFound, "source %s does not exist", cmd.LocalPathOnStorage)}
		case "conflict":
			return contract.Event{Type: contract.EventFailed, Error: contract.Errorf(contract.CodeTargetConflict, "something else is there")}
		case "outside":
			return contract.Event{Type: contract.EventRejected, Error: contract.Errorf(contract.CodeOutsideStorage, "not in a storage root")}
		case "checked":
			// As the stager compares the copy with the expected checksum,
			// and answers the seed's way through /stage_data.
			if cmd.ExpectedAdler32 != "" && cmd.Origin == contract.OriginStageData {
				return contract.Event{Type: contract.EventFailed, Error: contract.Errorf(contract.CodeChecksumMismatch, "expected %s", cmd.ExpectedAdler32)}
			}
			return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged}
		default:
			return contract.Event{Type: contract.EventSucceeded, Outcome: contract.OutcomeStaged, Message: "copied " + cmd.LocalPathOnStorage}
		}
	})
	tests := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		want       map[string]any
	}{
		{"staged", "/stage_data?method=local_copy&username=alice&jupyter_token=s3cret-token", `{"local_path_on_storage":"/mnt/a/f","relative_path":"f"}`,
			200, map[string]any{"status": "success", "message": "copied /mnt/a/f"}},
		{"data wrapper", "/stage-data/?method=local_symlink&username=alice", `{"data":{"local_path_on_storage":"/mnt/a/g","relative_path":"g"}}`,
			200, map[string]any{"status": "success", "message": "copied /mnt/a/g"}},
		{"already present", "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"/mnt/a/f","relative_path":"present"}`,
			200, map[string]any{"status": "success", "message": "present was already available for alice"}},
		{"missing source", "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"/mnt/a/nope","relative_path":"missing"}`,
			400, map[string]any{"code": "source_not_found", "detail": "source /mnt/a/nope does not exist"}},
		{"conflict", "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"/mnt/a/f","relative_path":"conflict"}`,
			409, map[string]any{"code": "target_conflict", "detail": "something else is there"}},
		{"expected checksum", "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"/mnt/a/f","relative_path":"checked","expected_adler32":"0a1b2c3d"}`,
			422, map[string]any{"code": "checksum_mismatch", "detail": "expected 0a1b2c3d"}},
		{"malformed checksum", "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"/mnt/a/f","relative_path":"checked","expected_adler32":"XYZ"}`,
			422, map[string]any{"code": "malformed", "detail": "expected_adler32 must be 8 lower-case hex digits"}},
		{"rejected by worker", "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"/etc/passwd","relative_path":"outside"}`,
			400, map[string]any{"code": "outside_storage", "detail": "not in a storage root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := e.do(http.MethodPost, tt.path, tt.body)
			if resp.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", resp.status, tt.wantStatus, resp.body)
			}
			body := resp.json(t)
			// Errors also carry ids; compare the seed's keys.
			for _, k := range []string{"request_id", "id", "status_url"} {
				delete(body, k)
			}
			if diff := cmp.Diff(body, tt.want); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
		})
	}
	if strings.Contains(e.logs.String(), "s3cret-token") {
		t.Error("the jupyter token appears in the logs")
	}
}

func TestStageDataTimeoutAnswers202(t *testing.T) {
	e := newEnv(t, gateway.Config{StageWaitTimeout: 100 * time.Millisecond})
	resp := e.do(http.MethodPost, "/stage_data?method=local_copy&username=alice", `{"local_path_on_storage":"a","relative_path":"b"}`)
	if resp.status != http.StatusAccepted {
		t.Fatalf("status = %d, want 202: %s", resp.status, resp.body)
	}
	body := resp.json(t)
	id, _ := body["id"].(string)
	if body["status"] != "accepted" || id == "" || body["status_url"] != "/api/v1/stagings/"+id || body["detail"] == "" {
		t.Errorf("body = %s", resp.body)
	}
	if n := len(e.commands()); n != 1 {
		t.Errorf("%d commands waiting, want 1", n)
	}
}
