package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/auth"
)

// Authenticator identifies the caller of a request (auth.Authenticator).
type Authenticator interface {
	// Off reports that authentication is off: every caller may act for
	// anyone.
	Off() bool
	Authenticate(r *http.Request) (auth.Identity, error)
}

// openRoutes answer without authentication: probes, metrics, the API's
// description and the allowed methods, none of which is about a user.
var openRoutes = map[string]bool{
	"/healthz": true, "/readyz": true, "/metrics": true,
	"/openapi.json": true, "/docs": true,
	// The web UI's page and files: the browser loads them before it has a
	// token; what the UI then asks for is authenticated.
	"/": true, "/ui/{file}": true,
	"/api/v1/methods": true, "/config/allowed-methods/": true, "/config/allowed-methods": true,
}

// authenticate is router middleware: with authentication on, every route
// but the open ones needs a valid bearer token, and the caller's identity
// goes into the request's context (and its username into the access log).
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.Auth.Off() {
			next.ServeHTTP(w, r)
			return
		}
		if _, ok := auth.FromContext(r.Context()); ok {
			// An inner request (the seed's download) of an authenticated one.
			next.ServeHTTP(w, r)
			return
		}
		if route := mux.CurrentRoute(r); route != nil {
			if t, err := route.GetPathTemplate(); err == nil && openRoutes[t] {
				next.ServeHTTP(w, r)
				return
			}
		}
		id, err := s.cfg.Auth.Authenticate(r)
		if err != nil {
			if errors.Is(err, auth.ErrProviderUnavailable) {
				s.log.ErrorContext(r.Context(), "identity_provider_unavailable", "error", err)
				writeError(w, r, contract.Errorf(contract.CodeUnavailable, "the identity provider is unreachable; try again later"))
				return
			}
			challenge := `Bearer realm="skao-staging"`
			detail := strings.TrimPrefix(err.Error(), auth.ErrUnauthenticated.Error()+": ")
			if errors.Is(err, auth.ErrInvalidToken) {
				challenge += `, error="invalid_token"`
				s.log.InfoContext(r.Context(), "token_refused", "reason", detail)
				// The verifier's text may describe keys or claims; the
				// caller gets the gist, the log has the rest.
				detail = "the bearer token is invalid or has expired"
				if strings.Contains(err.Error(), "expired") {
					detail = "the bearer token has expired"
				}
			}
			w.Header().Set("WWW-Authenticate", challenge)
			writeError(w, r, contract.Errorf(contract.CodeUnauthorized, "%s", detail))
			return
		}
		if info, ok := r.Context().Value(routeKey).(*routeInfo); ok && info != nil {
			info.user = id.Username
		}
		next.ServeHTTP(w, r.WithContext(auth.WithIdentity(r.Context(), id)))
	})
}

// mayActFor is nil when the caller of ctx may act for username.
func mayActFor(ctx context.Context, username string) error {
	id, ok := auth.FromContext(ctx)
	if !ok || id.MayActFor(username) {
		return nil
	}
	return contract.Errorf(contract.CodeForbidden, "%s may not act for user %q", id.Username, username)
}

// privileged answers 403 unless the caller of r may act for everyone
// (an admin or service role, or authentication off); it reports whether
// the handler should go on.
func privileged(w http.ResponseWriter, r *http.Request, what string) bool {
	user, ok := caller(r.Context())
	if ok {
		return true
	}
	writeError(w, r, contract.Errorf(contract.CodeForbidden, "%s needs the admin or service role; %s has neither", what, user))
	return false
}

// caller is the authenticated username of ctx ("" with authentication
// off) and whether it may act for everyone.
func caller(ctx context.Context) (username string, privileged bool) {
	id, ok := auth.FromContext(ctx)
	if !ok {
		return "", true
	}
	return id.Username, id.Privileged()
}

// downloadsFor lets only the user a link was issued to (or a privileged
// caller) use it while authentication is on; anyone else gets the 404 of an
// unknown link. An unknown token goes on to the download handler, which
// answers it.
func (s *Server) downloadsFor(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := auth.FromContext(r.Context())
		if !ok || id.Privileged() {
			next.ServeHTTP(w, r)
			return
		}
		owner, found, err := s.client.DownloadOwner(r.Context(), mux.Vars(r)["token"])
		if err != nil {
			s.logFault(r, "download_owner_failed", err)
			writeError(w, r, err)
			return
		}
		// Another user's link is answered as unknown: a 403 would confirm
		// that the token exists.
		if found && mayActFor(r.Context(), owner) != nil {
			writeError(w, r, contract.Errorf(contract.CodeNotFound, "no such download link"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
