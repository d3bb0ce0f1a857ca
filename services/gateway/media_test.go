package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

// JSON endpoints take JSON only: a form or text/plain body, which a page on
// another site can make a browser post, is refused 415. The seed's
// endpoints also take a body without a Content-Type, as the seed did,
// unless a browser says it comes from another site.
func TestJSONEndpointsTakeJSON(t *testing.T) {
	e := newEnv(t, gateway.Config{StageWaitTimeout: 100 * time.Millisecond, Demo: true, SourceRoot: t.TempDir()})
	seedBody := `{"local_path_on_storage":"a","relative_path":"b"}`
	endpoints := []struct {
		path, body string
		seed       bool
		ok         int
	}{
		{"/api/v1/stagings", validBody, false, http.StatusAccepted},
		{"/api/v1/jobs", `{"items":[` + item("alice", "/mnt/a/f") + `]}`, false, http.StatusAccepted},
		{"/stage_data?method=local_copy&username=alice", seedBody, true, http.StatusAccepted},
		{"/stage-data/?method=local_copy&username=alice", seedBody, true, http.StatusAccepted},
		{"/create-file/", `{"path":"f-%d.txt","content":"x"}`, true, http.StatusCreated},
	}
	types := []struct {
		name, contentType, secFetchSite string
		native, seed                    bool // accepted by the native and by the seed endpoints
	}{
		{"json", "application/json", "", true, true},
		{"json with charset", "application/json; charset=utf-8", "", true, true},
		{"a json type", "application/vnd.skao+json", "", true, true},
		{"text", "text/plain", "", false, false},
		{"text with charset", "text/plain;charset=UTF-8", "", false, false},
		{"form", "application/x-www-form-urlencoded", "", false, false},
		{"multipart form", "multipart/form-data; boundary=xyz", "", false, false},
		{"garbage", "json", "", false, false},
		{"none", "", "", false, true},
		{"none, same origin", "", "same-origin", false, true},
		{"none, from another site", "", "cross-site", false, false},
		{"none, from a sibling site", "", "same-site", false, false},
	}
	n := 0
	for _, ep := range endpoints {
		for _, ct := range types {
			t.Run(strings.SplitN(ep.path, "?", 2)[0]+" "+ct.name, func(t *testing.T) {
				n++
				body := strings.ReplaceAll(ep.body, "%d", string(rune('a'+n%26))+strings.Repeat("x", n/26))
				req, err := http.NewRequest(http.MethodPost, e.url+ep.path, strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if ct.contentType != "" {
					req.Header.Set("Content-Type", ct.contentType)
				}
				if ct.secFetchSite != "" {
					req.Header.Set("Sec-Fetch-Site", ct.secFetchSite)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				data, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if err := validateResponse(http.MethodPost, ep.path, resp.StatusCode, resp.Header, data); err != nil {
					t.Errorf("contract: %v", err)
				}
				accepted := ct.native
				if ep.seed {
					accepted = ct.seed
				}
				switch {
				case accepted && resp.StatusCode != ep.ok:
					t.Errorf("status = %d, want %d: %s", resp.StatusCode, ep.ok, data)
				case !accepted && (resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(data), `"code":"`+string(contract.CodeUnsupportedMediaType)+`"`)):
					t.Errorf("got %d %s, want 415 unsupported_media_type", resp.StatusCode, data)
				}
			})
		}
	}
	// No body and no type: the missing body is the mistake to report.
	if r := e.do(http.MethodPost, "/api/v1/stagings", ""); r.status != http.StatusUnprocessableEntity || r.json(t)["code"] != string(contract.CodeMissingField) {
		t.Errorf("empty body: %d %s, want 422 missing_field", r.status, r.body)
	}
}

// A method a path does not serve is answered 405 method_not_allowed, with
// the methods it does serve in Allow.
func TestWrongMethodAnswers405(t *testing.T) {
	e := newEnv(t, gateway.Config{}, gateway.WithDownloads(http.NotFoundHandler()))
	tests := []struct{ method, path, allow string }{
		{http.MethodDelete, "/api/v1/stagings", "GET, POST"},
		{http.MethodPut, "/api/v1/stagings/some-id", "DELETE, GET"},
		{http.MethodGet, "/stage_data", "POST"},
		{http.MethodGet, "/stage-data/", "POST"},
		{http.MethodPost, "/api/v1/downloads/tok", "GET, HEAD"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(tt.method, tt.path, "")
			if r.status != http.StatusMethodNotAllowed {
				t.Fatalf("status = %d, want 405: %s", r.status, r.body)
			}
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			body := r.json(t)
			if body["code"] != string(contract.CodeMethodNotAllowed) || !strings.Contains(body["detail"].(string), tt.allow) {
				t.Errorf("body = %s, want method_not_allowed naming %s", r.body, tt.allow)
			}
		})
	}
}
