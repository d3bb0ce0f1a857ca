package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/time/rate"
)

// OIDCConfig configures verification of OIDC access tokens (JWTs).
type OIDCConfig struct {
	// Issuer is the issuer URL; its discovery document names the JWKS.
	Issuer string
	// Audience must be in the token's aud claim.
	Audience string
	// UsernameClaim names the claim holding the username. A dotted name
	// reaches into nested objects.
	UsernameClaim string
	// RolesClaim names the claim holding the roles (a dotted name such
	// as realm_access.roles reaches into objects).
	// Keycloak's realm_access.roles is read too when it is absent.
	RolesClaim string
	// JWKSURL, when set, is used instead of discovery.
	JWKSURL string
	// FetchInterval is the least time between two fetches of the
	// identity provider's keys, and of its discovery document while that
	// fails.
	FetchInterval time.Duration
}

type oidcVerifier struct {
	cfg    OIDCConfig
	client *http.Client

	// The verifier is built on first use, not at start, so the gateway
	// starts (and answers health checks) while the identity provider is
	// down; a failed discovery is retried by the next request.
	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier
}

func newOIDC(cfg OIDCConfig, client *http.Client) (*oidcVerifier, error) {
	switch {
	case cfg.Issuer == "" || cfg.Audience == "":
		return nil, errors.New("AUTH_MODE=oidc needs OIDC_ISSUER and OIDC_AUDIENCE")
	case cfg.UsernameClaim == "" || cfg.RolesClaim == "":
		return nil, errors.New("AUTH_MODE=oidc needs OIDC_USERNAME_CLAIM and OIDC_ROLES_CLAIM")
	case cfg.FetchInterval <= 0:
		return nil, fmt.Errorf("OIDC_FETCH_INTERVAL must be positive, not %s", cfg.FetchInterval)
	}
	if client == nil {
		client = http.DefaultClient
	}
	next := client.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	limited := *client
	limited.Transport = &fetchLimiter{next: next, interval: cfg.FetchInterval, limits: map[string]*rate.Limiter{}}
	return &oidcVerifier{cfg: cfg, client: &limited}, nil
}

// fetchLimiter lets each URL of the identity provider be fetched at most
// once per interval. go-oidc fetches the key set again for every token
// whose key id it does not know (and whose signature the known keys do not
// verify), and the discovery document again after every failure: without a
// limit, each made-up token would cost the provider a request. A fetch
// refused here fails like an unreachable provider: that token is refused,
// and the keys already known keep working. The URLs are the issuer's few.
type fetchLimiter struct {
	next     http.RoundTripper
	interval time.Duration
	mu       sync.Mutex
	limits   map[string]*rate.Limiter
}

func (l *fetchLimiter) RoundTrip(req *http.Request) (*http.Response, error) {
	url := req.URL.String()
	l.mu.Lock()
	limit, ok := l.limits[url]
	if !ok {
		limit = rate.NewLimiter(rate.Every(l.interval), 1)
		l.limits[url] = limit
	}
	allowed := limit.Allow()
	l.mu.Unlock()
	if !allowed {
		return nil, fmt.Errorf("not fetched again: %s was fetched less than %s ago", url, l.interval)
	}
	return l.next.RoundTrip(req)
}

// ErrProviderUnavailable reports that the issuer's discovery document
// could not be read: the token could not be checked, which is not the
// caller's fault.
var ErrProviderUnavailable = errors.New("identity provider unavailable")

func (o *oidcVerifier) get(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verifier != nil {
		return o.verifier, nil
	}
	// go-oidc keeps only the HTTP client of this context for later key
	// fetches, not its deadline.
	ctx = oidc.ClientContext(ctx, o.client)
	// Access tokens are checked like ID tokens (signature, issuer, expiry)
	// with the API's audience in place of a client id.
	vc := &oidc.Config{ClientID: o.cfg.Audience}
	if o.cfg.JWKSURL != "" {
		o.verifier = oidc.NewVerifier(o.cfg.Issuer, oidc.NewRemoteKeySet(ctx, o.cfg.JWKSURL), vc)
		return o.verifier, nil
	}
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discovery at %s: %w", ErrProviderUnavailable, o.cfg.Issuer, err)
	}
	o.verifier = p.VerifierContext(ctx, vc)
	return o.verifier, nil
}

func (o *oidcVerifier) verify(ctx context.Context, raw string) (Identity, error) {
	v, err := o.get(ctx)
	if err != nil {
		return Identity{}, err
	}
	tok, err := v.Verify(oidc.ClientContext(ctx, o.client), raw)
	if err != nil {
		if _, expired := errors.AsType[*oidc.TokenExpiredError](err); expired {
			return Identity{}, fmt.Errorf("%w: the token has expired", ErrInvalidToken)
		}
		return Identity{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	name, _ := claim(claims, o.cfg.UsernameClaim).(string)
	roles := stringList(claim(claims, o.cfg.RolesClaim))
	if roles == nil {
		roles = stringList(claim(claims, "realm_access.roles"))
	}
	return Identity{Username: name, Roles: roles}, nil
}

// claim returns the value at a dotted path of claims, or nil.
func claim(claims map[string]any, path string) any {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// stringList reads a roles claim: an array of strings or one
// space-separated string (as scope claims are).
func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
