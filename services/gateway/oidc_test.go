package gateway_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway"
)

// idp is a test OIDC identity provider: discovery and JWKS over HTTP, and
// tokens signed with its own RSA key.
type idp struct {
	t     *testing.T
	url   string
	key   *rsa.PrivateKey
	other *rsa.PrivateKey // a key the JWKS does not hold

	mu      sync.Mutex
	extra   []jose.JSONWebKey // keys rotated in (rotate)
	fetches int               // of the JWKS
}

// rotate publishes key under kid in the JWKS, beside k1.
func (p *idp) rotate(key *rsa.PrivateKey, kid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.extra = append(p.extra, jose.JSONWebKey{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"})
}

// jwksFetches is how often the JWKS was fetched.
func (p *idp) jwksFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetches
}

func newIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{t: t, key: rsaKey(t), other: rsaKey(t)}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": p.url, "jwks_uri": p.url + "/jwks",
			"authorization_endpoint": p.url + "/auth", "token_endpoint": p.url + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		p.fetches++
		keys := append([]jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}, p.extra...)
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// token signs claims over the defaults (this issuer, audience staging,
// valid for an hour) with key, under key id k1.
func (p *idp) token(key *rsa.PrivateKey, claims map[string]any) string {
	p.t.Helper()
	return p.tokenKid(key, "k1", claims)
}

// tokenKid is token under key id kid.
func (p *idp) tokenKid(key *rsa.PrivateKey, kid string, claims map[string]any) string {
	p.t.Helper()
	now := time.Now()
	all := map[string]any{"iss": p.url, "aud": "staging", "sub": "s-1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		p.t.Fatal(err)
	}
	payload, err := json.Marshal(all)
	if err != nil {
		p.t.Fatal(err)
	}
	sig, err := signer.Sign(payload)
	if err != nil {
		p.t.Fatal(err)
	}
	s, err := sig.CompactSerialize()
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

func TestAuthOIDC(t *testing.T) {
	p := newIDP(t)
	e := newEnv(t, gateway.Config{AuthMode: "oidc", OIDCIssuer: p.url, OIDCAudience: "staging"})
	answer(e, contract.SubjectAuditList, func(q contract.AuditListRequest) contract.AuditListReply {
		// Echo the filter, so the test sees whose list was asked for.
		return contract.AuditListReply{Items: []contract.Record{{ID: "r1", Username: q.Username, Method: contract.MethodLocalCopy, Status: contract.StatusQueued}}}
	})
	alice := p.token(p.key, map[string]any{"preferred_username": "alice"})
	admin := p.token(p.key, map[string]any{"preferred_username": "root", "realm_access": map[string]any{"roles": []string{"admin"}}})
	service := p.token(p.key, map[string]any{"preferred_username": "rucio", "roles": []string{"service"}})
	expired := p.token(p.key, map[string]any{"preferred_username": "alice", "exp": time.Now().Add(-time.Minute).Unix()})
	forged := p.token(p.other, map[string]any{"preferred_username": "alice"})
	wrongAud := p.token(p.key, map[string]any{"preferred_username": "alice", "aud": "another-api"})
	wrongIss := p.token(p.key, map[string]any{"preferred_username": "alice", "iss": "https://elsewhere.example.org"})

	bobReq := "bob-request-1"
	e.publishEvent(contract.Event{ID: "e-bob", Type: contract.EventQueued, Source: "test", RequestID: bobReq, Method: contract.MethodLocalCopy, Username: "bob", LocalPathOnStorage: "a", RelativePath: "b"})

	tests := []struct {
		name, method, path, body, token string
		want                            int
		wantCode                        contract.Code
		wantDetail                      string
	}{
		{"no token", "POST", "/api/v1/stagings", submitBody("alice"), "", 401, contract.CodeUnauthorized, "bearer token is required"},
		{"not bearer", "GET", "/api/v1/stagings", "", "Basic YWxpY2U6cHc=", 401, contract.CodeUnauthorized, "Bearer"},
		{"expired", "POST", "/api/v1/stagings", submitBody("alice"), "Bearer " + expired, 401, contract.CodeUnauthorized, "expired"},
		{"bad signature", "POST", "/api/v1/stagings", submitBody("alice"), "Bearer " + forged, 401, contract.CodeUnauthorized, "invalid"},
		{"wrong audience", "POST", "/api/v1/stagings", submitBody("alice"), "Bearer " + wrongAud, 401, contract.CodeUnauthorized, "invalid"},
		{"wrong issuer", "POST", "/api/v1/stagings", submitBody("alice"), "Bearer " + wrongIss, 401, contract.CodeUnauthorized, "invalid"},
		{"garbage", "GET", "/api/v1/stagings", "", "Bearer not.a.jwt", 401, contract.CodeUnauthorized, "invalid"},
		{"own submission", "POST", "/api/v1/stagings", submitBody("alice"), "Bearer " + alice, 202, "", ""},
		{"for another user", "POST", "/api/v1/stagings", submitBody("bob"), "Bearer " + alice, 403, contract.CodeForbidden, `"bob"`},
		{"admin for another user", "POST", "/api/v1/stagings", submitBody("bob"), "Bearer " + admin, 202, "", ""},
		{"service role for another user", "POST", "/api/v1/stagings", submitBody("bob"), "Bearer " + service, 202, "", ""},
		{"seed for another user", "POST", "/stage_data?method=local_copy&username=bob", `{"local_path_on_storage":"a","relative_path":"b"}`, "Bearer " + alice, 403, contract.CodeForbidden, ""},
		{"job with another user's item", "POST", "/api/v1/jobs", `{"items":[` + submitBody("alice") + `,` + submitBody("bob") + `]}`, "Bearer " + alice, 403, contract.CodeForbidden, ""},
		{"read another user's request", "GET", "/api/v1/stagings/" + bobReq, "", "Bearer " + alice, 404, contract.CodeNotFound, bobReq},
		{"admin reads it", "GET", "/api/v1/stagings/" + bobReq, "", "Bearer " + admin, 200, "", ""},
		{"list another user's", "GET", "/api/v1/stagings?username=bob", "", "Bearer " + alice, 403, contract.CodeForbidden, ""},
		{"health is open", "GET", "/healthz", "", "", 200, "", ""},
		{"document is open", "GET", "/openapi.json", "", "", 200, "", ""},
		{"docs are open", "GET", "/docs", "", "", 200, "", ""},
		{"methods are open", "GET", "/api/v1/methods", "", "", 200, "", ""},
		{"metrics are open", "GET", "/metrics", "", "", 200, "", ""},
		{"config is not", "GET", "/config/", "", "", 401, contract.CodeUnauthorized, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.token != "" {
				hdr = []string{"Authorization", tt.token}
			}
			r := e.do(tt.method, tt.path, tt.body, hdr...)
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d: %s", r.status, tt.want, r.body)
			}
			if tt.wantCode == "" {
				return
			}
			body := r.json(t)
			if body["code"] != string(tt.wantCode) {
				t.Errorf("code = %v, want %s", body["code"], tt.wantCode)
			}
			if d, _ := body["detail"].(string); !strings.Contains(d, tt.wantDetail) {
				t.Errorf("detail = %q, want it to say %q", d, tt.wantDetail)
			}
			if tt.want == 401 {
				ch := r.header.Get("WWW-Authenticate")
				if !strings.HasPrefix(ch, "Bearer ") {
					t.Errorf("WWW-Authenticate = %q", ch)
				}
				if tt.token != "" && strings.HasPrefix(tt.token, "Bearer ") && !strings.Contains(ch, `error="invalid_token"`) {
					t.Errorf("WWW-Authenticate = %q, want invalid_token", ch)
				}
			}
		})
	}

	t.Run("list is forced to the caller", func(t *testing.T) {
		r := e.do("GET", "/api/v1/stagings", "", "Authorization", "Bearer "+alice)
		if r.status != 200 {
			t.Fatalf("status = %d: %s", r.status, r.body)
		}
		var reply contract.AuditListReply
		if err := json.Unmarshal(r.body, &reply); err != nil {
			t.Fatal(err)
		}
		if len(reply.Items) != 1 || reply.Items[0].Username != "alice" {
			t.Errorf("the audit was asked for %+v, want alice's", reply.Items)
		}
		r = e.do("GET", "/api/v1/stagings", "", "Authorization", "Bearer "+admin)
		if err := json.Unmarshal(r.body, &reply); err != nil {
			t.Fatal(err)
		}
		if len(reply.Items) != 1 || reply.Items[0].Username != "" {
			t.Errorf("an admin's list was filtered: %+v", reply.Items)
		}
	})

	t.Run("origin stays gateway, caller in the access log", func(t *testing.T) {
		for _, cmd := range e.commands() {
			if cmd.Origin != "gateway" {
				t.Errorf("command %s has origin %q", cmd.ID, cmd.Origin)
			}
		}
		logs := e.logs.String()
		if !strings.Contains(logs, `"user":"alice"`) || !strings.Contains(logs, `"user":"root"`) {
			t.Errorf("the access log does not name the callers:\n%s", logs)
		}
		if strings.Contains(logs, alice) || strings.Contains(logs, forged) {
			t.Error("a token reached the logs")
		}
	})
}

// Tokens with key ids the issuer never published cannot make the gateway
// fetch its keys more than once per OIDC_FETCH_INTERVAL; a key the issuer
// rotates in is taken up once the interval has passed.
func TestAuthOIDCKeyFetchesRateLimited(t *testing.T) {
	p := newIDP(t)
	const interval = time.Second
	e := newEnv(t, gateway.Config{AuthMode: "oidc", OIDCIssuer: p.url, OIDCAudience: "staging", OIDCFetchInterval: interval})
	submit := func(token string) int {
		return e.do("POST", "/api/v1/stagings", submitBody("alice"), "Authorization", "Bearer "+token).status
	}
	// Fetches allowed since start: one, and one more per interval passed.
	start := time.Now()
	allowed := func() int { return 1 + int(time.Since(start)/interval) }
	if got := submit(p.token(p.key, map[string]any{"preferred_username": "alice"})); got != 202 {
		t.Fatalf("a valid token: %d, want 202", got)
	}
	if got := p.jwksFetches(); got != 1 {
		t.Fatalf("JWKS fetched %d times for the first token, want 1", got)
	}
	for i := range 20 {
		tok := p.tokenKid(p.other, fmt.Sprintf("made-up-%d", i), map[string]any{"preferred_username": "alice"})
		if got := submit(tok); got != 401 {
			t.Errorf("token with an unknown key id: %d, want 401", got)
		}
	}
	if got, limit := p.jwksFetches(), allowed(); got > limit {
		t.Errorf("20 tokens with unknown key ids made %d JWKS fetches, want at most %d", got, limit)
	}

	// The issuer rotates a new key in: it works once the gateway may
	// fetch the keys again.
	rotated := rsaKey(t)
	p.rotate(rotated, "k2")
	tok := p.tokenKid(rotated, "k2", map[string]any{"preferred_username": "alice"})
	testenv.Eventually(t, 10*interval, "a token of the rotated key to be accepted", func() bool { return submit(tok) == 202 })
	if got, limit := p.jwksFetches(), allowed(); got > limit {
		t.Errorf("%d JWKS fetches in %s, want at most %d", got, time.Since(start), limit)
	}
}

func TestAuthOIDCJWKSOverrideAndClaims(t *testing.T) {
	p := newIDP(t)
	// Discovery would fail: the issuer is not the IdP's URL, so only the
	// JWKS override can make this work.
	e := newEnv(t, gateway.Config{AuthMode: "oidc", OIDCIssuer: "https://sso.example.org/realms/ska", OIDCAudience: "staging",
		OIDCJWKSURL: p.url + "/jwks", OIDCUsernameClaim: "uid", OIDCRolesClaim: "groups"})
	tok := func(claims map[string]any) string {
		claims["iss"] = "https://sso.example.org/realms/ska"
		return "Bearer " + p.token(p.key, claims)
	}
	tests := []struct {
		name   string
		token  string
		user   string
		status int
	}{
		{"username claim", tok(map[string]any{"uid": "carol", "preferred_username": "mallory"}), "carol", 202},
		{"not the default claim", tok(map[string]any{"uid": "carol", "preferred_username": "mallory"}), "mallory", 403},
		{"roles claim as a string", tok(map[string]any{"uid": "ops", "groups": "staff admin"}), "bob", 202},
		{"no username", tok(map[string]any{"preferred_username": "carol"}), "carol", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do("POST", "/api/v1/stagings", submitBody(tt.user), "Authorization", tt.token)
			if r.status != tt.status {
				t.Errorf("status = %d, want %d: %s", r.status, tt.status, r.body)
			}
		})
	}
}
