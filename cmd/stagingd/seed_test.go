package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSeedClientsKeepWorking replays what clients of the seed prototype
// send against the real all-in-one, with the seed's status codes.
func TestSeedClientsKeepWorking(t *testing.T) {
	sys := startSystem(t, "", "")
	storage := sys.cfg.Stager.SourceRoot
	users := sys.cfg.Stager.UserAreaRoot

	tests := []struct {
		name       string
		query      string
		body       string
		wantStatus int
		wantKey    string // "status" (success) or "detail" (error)
	}{
		{"local_copy of a file, absolute path as seed clients send it", "method=local_copy&username=dave",
			`{"local_path_on_storage":"` + storage + `/sample/hello.txt","relative_path":"seed/hello.txt"}`, 200, "status"},
		{"local_copy of a directory", "method=local_copy&username=dave",
			`{"data":{"local_path_on_storage":"sample/tree","relative_path":"seed/tree"}}`, 200, "status"},
		{"repeat is still success", "method=local_copy&username=dave",
			`{"local_path_on_storage":"sample/hello.txt","relative_path":"seed/hello.txt"}`, 200, "status"},
		{"local_symlink", "method=local_symlink&username=dave",
			`{"local_path_on_storage":"sample/hello.txt","relative_path":"seed/link.txt"}`, 200, "status"},
		{"local_hardlink", "method=local_hardlink&username=dave",
			`{"local_path_on_storage":"sample/hello.txt","relative_path":"seed/hard.txt"}`, 200, "status"},
		{"invalid method", "method=symlink_copy&username=dave",
			`{"local_path_on_storage":"sample/hello.txt","relative_path":"x"}`, 400, "detail"},
		{"missing source", "method=local_copy&username=dave",
			`{"local_path_on_storage":"sample/nope.fits","relative_path":"x"}`, 400, "detail"},
		{"source outside the storage", "method=local_copy&username=dave",
			`{"local_path_on_storage":"/etc/passwd","relative_path":"x"}`, 400, "detail"},
		{"target outside the user area", "method=local_copy&username=dave",
			`{"local_path_on_storage":"sample/hello.txt","relative_path":"../erin/x"}`, 400, "detail"},
		{"no body", "method=local_copy&username=dave", ``, 422, "detail"},
		{"malformed JSON", "method=local_copy&username=dave", `{"local_path_on_storage":`, 422, "detail"},
		{"download of a missing file", "method=direct_download&username=dave",
			`{"local_path_on_storage":"sample/nope.fits","relative_path":"x"}`, 400, "detail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(sys.httpURL+"/stage_data?"+tt.query, "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatalf("answer is not JSON: %v", err)
			}
			if resp.StatusCode != tt.wantStatus || out[tt.wantKey] == nil {
				t.Fatalf("POST /stage_data?%s = %d %v, want %d with %q", tt.query, resp.StatusCode, out, tt.wantStatus, tt.wantKey)
			}
			if tt.wantKey == "status" && out["status"] != "success" {
				t.Errorf("status = %v, want success", out["status"])
			}
		})
	}

	t.Run("copies are read-only", func(t *testing.T) {
		modes := map[string]os.FileMode{
			"seed/hello.txt":      0o400,
			"seed/tree":           0o500,
			"seed/tree/a.txt":     0o400,
			"seed/tree/sub":       0o500,
			"seed/tree/sub/b.txt": 0o400,
		}
		for rel, want := range modes {
			fi, err := os.Stat(filepath.Join(users, "dave", rel))
			if err != nil {
				t.Errorf("%s: %v", rel, err)
				continue
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s mode = %v, want %v", rel, got, want)
			}
		}
		if target, err := os.Readlink(filepath.Join(users, "dave", "seed/link.txt")); err != nil || target != filepath.Join(storage, "sample/hello.txt") {
			t.Errorf("symlink points at %q (%v), want the source", target, err)
		}
		if fi, err := os.Stat(filepath.Join(storage, "sample/hello.txt")); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("source mode = %v (%v): the source must never be modified", fi.Mode().Perm(), err)
		}
	})

	t.Run("direct_download answers with the file", func(t *testing.T) {
		resp, err := http.Post(sys.httpURL+"/stage_data?method=direct_download&username=dave", "application/json",
			strings.NewReader(`{"local_path_on_storage":"sample/hello.txt","relative_path":"hello.txt"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || string(body) != sampleContent {
			t.Fatalf("direct_download = %d %q, want 200 with the file", resp.StatusCode, body)
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
			t.Errorf("Content-Disposition = %q, want attachment", cd)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("Content-Type = %q, want application/octet-stream", ct)
		}
	})

	t.Run("config endpoints", func(t *testing.T) {
		var cfg map[string]any
		getJSON(t, sys.httpURL+"/config/", &cfg)
		if cfg["source_storage_path"] != storage || cfg["target_storage_path"] != users || cfg["allowed_methods"] == nil {
			t.Errorf("GET /config/ = %v, want the seed's keys", cfg)
		}
		var methods map[string][]string
		getJSON(t, sys.httpURL+"/config/allowed-methods/", &methods)
		if got := strings.Join(methods["allowed_methods"], ","); got != "local_copy,local_symlink,local_hardlink,direct_download" {
			t.Errorf("allowed methods = %s; jupyter_copy must be off without a hub", got)
		}
	})
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}
