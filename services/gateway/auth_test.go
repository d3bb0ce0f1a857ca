package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway"
)

func TestAuthStaticTokens(t *testing.T) {
	hashed := sha256.Sum256([]byte("rucio-secret-token"))
	file := tokensFile(t, "# token username roles\n"+
		"alice-secret-token alice\n"+
		"sha256:"+hex.EncodeToString(hashed[:])+" rucio service\n"+
		"\n")
	e := newEnv(t, gateway.Config{AuthMode: "tokens", AuthTokensFile: file})
	tests := []struct {
		name, token, user string
		want              int
	}{
		{"own", "alice-secret-token", "alice", 202},
		{"another user", "alice-secret-token", "bob", 403},
		{"hashed service token for anyone", "rucio-secret-token", "bob", 202},
		{"unknown token", "alice-secret-tokeN", "alice", 401},
		{"the hash itself is no token", hex.EncodeToString(hashed[:]), "bob", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/stagings", submitBody(tt.user), "Authorization", "Bearer "+tt.token)
			if r.status != tt.want {
				t.Errorf("status = %d, want %d: %s", r.status, tt.want, r.body)
			}
		})
	}
	if logs := e.logs.String(); strings.Contains(logs, "secret-token") {
		t.Errorf("a token reached the logs:\n%s", logs)
	}
}

func TestAuthConfigRefused(t *testing.T) {
	tests := []struct {
		name string
		cfg  gateway.Config
		want string
	}{
		{"unknown mode", gateway.Config{AuthMode: "kerberos"}, "kerberos"},
		{"tokens without a file", gateway.Config{AuthMode: "tokens"}, "AUTH_TOKENS_FILE"},
		{"missing tokens file", gateway.Config{AuthMode: "tokens", AuthTokensFile: "/nonexistent/tokens"}, "tokens file"},
		{"oidc without audience", gateway.Config{AuthMode: "oidc", OIDCIssuer: "https://sso.example.org"}, "OIDC_AUDIENCE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newHandler(t, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewHandler error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestCORS(t *testing.T) {
	preflight := func(e *env, origin string) response {
		return e.do(http.MethodOptions, "/api/v1/stagings", "",
			"Origin", origin,
			"Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "authorization,content-type,idempotency-key")
	}
	e := newEnv(t, gateway.Config{CORSAllowedOrigins: []string{"https://app.example.org"}, AuthMode: "tokens", AuthTokensFile: tokensFile(t, "alice-secret-token alice\n")})
	r := preflight(e, "https://app.example.org")
	if r.status >= 300 {
		t.Fatalf("preflight status = %d: %s", r.status, r.body)
	}
	got := map[string]string{
		"origin":  r.header.Get("Access-Control-Allow-Origin"),
		"methods": r.header.Get("Access-Control-Allow-Methods"),
		"headers": strings.ToLower(r.header.Get("Access-Control-Allow-Headers")),
	}
	want := map[string]string{"origin": "https://app.example.org", "methods": "POST", "headers": "authorization,content-type,idempotency-key"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("preflight headers (-got +want):\n%s", diff)
	}
	if r := preflight(e, "https://evil.example.org"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a foreign origin was allowed: %v", r.header)
	}
	// A simple request gets the header too, and exposes the request id.
	r = e.do("GET", "/api/v1/methods", "", "Origin", "https://app.example.org")
	if r.header.Get("Access-Control-Allow-Origin") != "https://app.example.org" || !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "X-Request-Id") {
		t.Errorf("GET with Origin: %v", r.header)
	}

	off := newEnv(t, gateway.Config{})
	if r := preflight(off, "https://app.example.org"); r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS headers without CORS_ALLOWED_ORIGINS: %v", r.header)
	}
}

func TestDownloadOnlyForItsUser(t *testing.T) {
	served := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write([]byte("bytes"))
	})
	e := newEnv(t, gateway.Config{AuthMode: "tokens", AuthTokensFile: tokensFile(t, "alice-secret-token alice\nbob-secret-token bob\nops-secret-token ops admin\n")},
		gateway.WithDownloads(served))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "STAGING_DOWNLOADS"})
	if err != nil {
		t.Fatal(err)
	}
	const token = "Zm9yLWJvYi1vbmx5LWEtZG93bmxvYWQtdG9rZW4tMTIzNDU2"
	if _, err := kv.Put(ctx, token, []byte(`{"path":"a/f","username":"bob","request_id":"r1"}`)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, token string
		want        int
	}{
		{"its user", "bob-secret-token", 200},
		{"another user, as if unknown", "alice-secret-token", 404},
		{"an admin", "ops-secret-token", 200},
		{"no token", "", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.token != "" {
				hdr = []string{"Authorization", "Bearer " + tt.token}
			}
			if r := e.do("GET", "/api/v1/downloads/"+token, "", hdr...); r.status != tt.want {
				t.Errorf("status = %d, want %d: %s", r.status, tt.want, r.body)
			}
		})
	}
}

// TestPrivilegedOnly checks the routes that show or change more than one
// user's data: with authentication on only an admin or service caller may
// use them.
func TestPrivilegedOnly(t *testing.T) {
	root := t.TempDir()
	e := newEnv(t, gateway.Config{
		AuthMode: "tokens", AuthTokensFile: tokensFile(t, "alice-secret-token alice\nops-secret-token ops admin\n"),
		SourceRoot: root, Demo: true,
	})
	tests := []struct {
		name, method, path, body, token string
		want                            int
	}{
		{"logs, a user", "GET", "/logs/", "", "alice-secret-token", 403},
		{"logs alias, a user", "GET", "/logs?limit=1", "", "alice-secret-token", 403},
		{"logs, an admin", "GET", "/logs/", "", "ops-secret-token", 200},
		{"create a file, a user", "POST", "/create-file/", `{"path":"u.txt","content":"x"}`, "alice-secret-token", 403},
		{"create a file, an admin", "POST", "/create-file/", `{"path":"a.txt","content":"x"}`, "ops-secret-token", 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.body, "Authorization", "Bearer "+tt.token)
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d: %s", r.status, tt.want, r.body)
			}
			if tt.want == 403 {
				if code := r.json(t)["code"]; code != string(contract.CodeForbidden) {
					t.Errorf("code = %v, want forbidden", code)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(root, "u.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a user's file was written (stat: %v)", err)
	}
}
