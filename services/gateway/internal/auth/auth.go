// Package auth authenticates the gateway's callers: none (a demo, everyone
// is anonymous and may do everything), static bearer tokens read from a
// file, or OIDC access tokens (JWT) verified against the issuer's JWKS. It
// also says whom an authenticated caller may act for.
package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The authentication modes (AUTH_MODE).
const (
	ModeNone   = "none"
	ModeTokens = "tokens"
	ModeOIDC   = "oidc"
)

// Identity is an authenticated caller.
type Identity struct {
	Username string
	Roles    []string
	// privileged is set from the configured admin roles when the identity
	// is built, so callers need not know them.
	privileged bool
}

// Privileged reports whether the caller may act for any user (an admin or
// service role).
func (id Identity) Privileged() bool { return id.privileged }

// MayActFor reports whether the caller may submit, read, stream or
// download for username.
func (id Identity) MayActFor(username string) bool {
	return id.privileged || (id.Username != "" && id.Username == username)
}

// ErrUnauthenticated is returned for a request without usable credentials.
// Its wrapped detail says why and never contains the credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrInvalidToken wraps ErrUnauthenticated for a token that was presented
// but is not valid (unknown, expired, badly signed, wrong audience): the
// WWW-Authenticate challenge says error="invalid_token" then.
var ErrInvalidToken = fmt.Errorf("%w: invalid token", ErrUnauthenticated)

// Config selects and configures the mode.
type Config struct {
	Mode string
	// TokensFile holds the static tokens (mode tokens); see LoadTokens.
	TokensFile string
	// AdminRoles may act for anyone.
	AdminRoles []string
	OIDC       OIDCConfig
}

// Authenticator turns a request's Authorization header into an Identity.
type Authenticator struct {
	verify     func(ctx context.Context, token string) (Identity, error)
	adminRoles []string
}

// New builds the authenticator of cfg. For mode none it is Off: it
// authenticates nobody and every caller may do everything. client fetches
// the OIDC discovery document and keys (nil: http.DefaultClient).
func New(cfg Config, client *http.Client) (*Authenticator, error) {
	a := &Authenticator{adminRoles: cfg.AdminRoles}
	switch strings.ToLower(cfg.Mode) {
	case "", ModeNone:
		return a, nil
	case ModeTokens:
		if cfg.TokensFile == "" {
			return nil, errors.New("AUTH_MODE=tokens needs AUTH_TOKENS_FILE")
		}
		ts, err := LoadTokens(cfg.TokensFile)
		if err != nil {
			return nil, err
		}
		a.verify = ts.verify
	case ModeOIDC:
		v, err := newOIDC(cfg.OIDC, client)
		if err != nil {
			return nil, err
		}
		a.verify = v.verify
	default:
		return nil, fmt.Errorf("AUTH_MODE %q is not one of none, tokens, oidc", cfg.Mode)
	}
	return a, nil
}

// Off reports whether authentication is off (mode none): then no request
// carries an identity, and every caller may act for anyone.
func (a *Authenticator) Off() bool { return a.verify == nil }

// Authenticate reads the bearer token of r and returns its identity, or an
// error wrapping ErrUnauthenticated.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return Identity{}, fmt.Errorf("%w: a bearer token is required", ErrUnauthenticated)
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return Identity{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrUnauthenticated)
	}
	id, err := a.verify(r.Context(), token)
	if err != nil {
		return Identity{}, err
	}
	if id.Username == "" {
		return Identity{}, fmt.Errorf("%w: the token names no user", ErrInvalidToken)
	}
	id.privileged = slices.ContainsFunc(id.Roles, func(r string) bool { return slices.Contains(a.adminRoles, r) })
	return id, nil
}

type ctxKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity WithIdentity put in ctx; ok is false
// when authentication is off (or the route is open).
func FromContext(ctx context.Context) (id Identity, ok bool) {
	id, ok = ctx.Value(ctxKey{}).(Identity)
	return id, ok
}
