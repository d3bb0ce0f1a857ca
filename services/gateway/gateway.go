// Package gateway is the REST front door of the staging service: it
// validates requests, publishes commands and their queued or rejected
// events, waits for or reads a request's events, asks the audit for
// history and proxies downloads to the stager. It holds no state of its own.
//
// Routes: the native API under /api/v1 (stagings, methods, downloads), the
// seed prototype's endpoints (/stage_data, /stage-data/, /config/,
// /config/allowed-methods/, /create-file/ in demo mode) and /healthz,
// /readyz, /metrics.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/gorilla/mux"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/telemetry"
	"github.com/skao/skao-staging/services/gateway/internal/api"
	"github.com/skao/skao-staging/services/gateway/internal/auth"
	"github.com/skao/skao-staging/services/gateway/internal/idempotency"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// Config is the gateway's configuration; each variable takes the STAGING_
// prefix (STAGING_HTTP_ADDR) or the matching flag (-http-addr). Each
// default is its field's envDefault tag; a zero field takes it, so tests
// and the all-in-one may build a Config by hand.
type Config struct {
	HTTPAddr       string   `env:"HTTP_ADDR" envDefault:":8080" help:"address of the REST API listener"`
	AllowedMethods []string `env:"ALLOWED_METHODS" envDefault:"local_copy,local_symlink,local_hardlink,direct_download,jupyter_copy" envSeparator:"," help:"staging methods allowed at this site"`
	// StageWaitTimeout is how long the seed API waits for an outcome before
	// answering 202 with a status URL.
	StageWaitTimeout time.Duration `env:"STAGE_WAIT_TIMEOUT" envDefault:"30s" help:"how long POST /stage_data waits for the outcome"`
	MaxBodyBytes     int64         `env:"MAX_BODY_BYTES" envDefault:"1048576" help:"largest request body accepted"`
	// SourceRoot and UserAreaRoot are shown by GET /config/; SourceRoot is
	// also where the demo's POST /create-file/ writes.
	SourceRoot   string `env:"SOURCE_ROOT" help:"source storage root (shown by /config/; demo file creation)"`
	UserAreaRoot string `env:"USER_AREA_ROOT" help:"root of the user areas (shown by /config/)"`
	Demo         bool   `env:"DEMO" envDefault:"false" help:"enable POST /create-file/ (demo only)"`

	// StorageBrowserDisabled is a negative so that its default, on, is the
	// zero value: WithDefaults would turn a false "on" back to true.
	StorageBrowserDisabled bool `env:"STORAGE_BROWSER_DISABLED" envDefault:"false" help:"turn off GET /api/v1/storage, the read-only listing of the source storage"`

	// PublicURL, when set, makes status URLs absolute (https://staging.example.org).
	PublicURL string `env:"PUBLIC_URL" help:"public base URL of the gateway, for absolute status URLs"`
	// StagerDownloadURL is the stager's download listener, to which
	// /api/v1/downloads/ is proxied unless WithDownloads replaces the proxy.
	StagerDownloadURL string `env:"STAGER_DOWNLOAD_URL" envDefault:"http://127.0.0.1:8081" help:"base URL of the stager's download listener"`
	// NATSTimeout bounds one publish or audit query.
	NATSTimeout time.Duration `env:"NATS_TIMEOUT" envDefault:"5s" help:"how long a publish or audit query may take"`
	// LogWindowLines is how many of the system's newest log lines GET
	// /logs/ keeps in memory.
	LogWindowLines int `env:"LOG_WINDOW_LINES" envDefault:"1000" help:"log lines of the whole system kept for GET /logs/"`

	// AuthMode is none (a demo: anyone may act for anyone), tokens (static
	// bearer tokens from AuthTokensFile) or oidc (JWTs of OIDCIssuer).
	AuthMode          string   `env:"AUTH_MODE" envDefault:"none" help:"authentication: none, tokens or oidc"`
	AuthTokensFile    string   `env:"AUTH_TOKENS_FILE" help:"static bearer tokens, lines of '<token|sha256:hex> <username> [role,role]' (AUTH_MODE=tokens)"`
	AuthAdminRoles    []string `env:"AUTH_ADMIN_ROLES" envDefault:"admin,service" envSeparator:"," help:"roles that may act for any user"`
	OIDCIssuer        string   `env:"OIDC_ISSUER" help:"OIDC issuer URL (AUTH_MODE=oidc); its discovery document names the JWKS"`
	OIDCAudience      string   `env:"OIDC_AUDIENCE" help:"audience a token must carry (AUTH_MODE=oidc)"`
	OIDCUsernameClaim string   `env:"OIDC_USERNAME_CLAIM" envDefault:"preferred_username" help:"claim holding the username"`
	OIDCRolesClaim    string   `env:"OIDC_ROLES_CLAIM" envDefault:"roles" help:"claim holding the roles (dotted for nested, e.g. realm_access.roles)"`
	OIDCJWKSURL       string   `env:"OIDC_JWKS_URL" help:"JWKS URL instead of the one discovery names"`
	// OIDCFetchInterval bounds how often a token with an unknown key id
	// can make the gateway fetch the issuer's keys.
	OIDCFetchInterval time.Duration `env:"OIDC_FETCH_INTERVAL" envDefault:"1m" help:"least time between two fetches of the OIDC issuer's keys (or of its discovery document while that fails)"`
	// CORSAllowedOrigins get CORS headers (https://app.example.org, or *).
	CORSAllowedOrigins []string `env:"CORS_ALLOWED_ORIGINS" envSeparator:"," help:"origins allowed by CORS, comma-separated (empty: no CORS headers)"`
	JobMaxItems        int      `env:"JOB_MAX_ITEMS" envDefault:"1000" help:"most items of one batch job"`
}

// Option adjusts how the gateway is mounted.
type Option func(*options)

type options struct {
	gatherer  prometheus.Gatherer
	routes    func(*mux.Router)
	downloads http.Handler
	// httpClient reaches the OIDC issuer (nil: http.DefaultClient).
	httpClient *http.Client
}

// WithHTTPClient makes the gateway reach the OIDC issuer and its keys
// with c (a proxy, a private CA, a test server's client).
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.httpClient = c }
}

// WithGatherer serves g on /metrics. By default the gateway serves
// deps.Registerer when it is also a Gatherer (a *prometheus.Registry).
func WithGatherer(g prometheus.Gatherer) Option {
	return func(o *options) { o.gatherer = g }
}

// WithRoutes mounts extra routes on the gateway's router before its own, so
// they take precedence and go through the same middleware (request id,
// trace, access log, metrics).
func WithRoutes(f func(*mux.Router)) Option {
	return func(o *options) { o.routes = f }
}

// WithDownloads serves GET /api/v1/downloads/{token} with h instead of the
// proxy to STAGER_DOWNLOAD_URL: the all-in-one passes the stager's download
// handler. h receives the full path, /api/v1/downloads/<token>, and the
// token in mux.Vars(r)["token"].
func WithDownloads(h http.Handler) Option {
	return func(o *options) { o.downloads = h }
}

// Handler is the gateway's HTTP handler. It holds NATS subscriptions (the
// log window's, the outcome watches' shared one) until Close.
type Handler struct {
	*api.Server
	closers []func() error
}

// Close ends the handler's subscriptions; call it once the HTTP server
// serving it has shut down. Later requests may fail.
func (h *Handler) Close() error {
	var errs []error
	for _, c := range h.closers {
		errs = append(errs, c())
	}
	h.closers = nil
	return errors.Join(errs...)
}

// unsubscribe ends sub, which the connection's closing ends too.
func unsubscribe(sub *nats.Subscription) func() error {
	return func() error {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			return fmt.Errorf("gateway: unsubscribe %s: %w", sub.Subject, err)
		}
		return nil
	}
}

// NewHandler returns the gateway's HTTP handler (every route, ops endpoints
// included), for Run, tests and the all-in-one; Close it after serving.
func NewHandler(cfg Config, deps service.Deps, opts ...Option) (*Handler, error) {
	if err := service.WithDefaults(&cfg); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if deps.NC == nil || deps.JS == nil || deps.Log == nil {
		return nil, errors.New("gateway: deps need NC, JS and Log")
	}
	allowed, err := contract.ParseMethodSet(cfg.AllowedMethods)
	if err != nil {
		return nil, fmt.Errorf("gateway: ALLOWED_METHODS: %w", err)
	}
	if o.downloads == nil {
		target, err := url.Parse(cfg.StagerDownloadURL)
		if err != nil || target.Scheme == "" || target.Host == "" {
			return nil, fmt.Errorf("gateway: STAGER_DOWNLOAD_URL %q is not an absolute URL", cfg.StagerDownloadURL)
		}
		o.downloads = api.NewDownloadProxy(target, deps.Log.With("component", "download_proxy"))
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if o.gatherer == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("gateway: deps.Registerer is not a Gatherer; pass WithGatherer")
		}
		o.gatherer = g
	}
	tp := deps.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	health := deps.Health
	if health == nil {
		health = telemetry.NewHealth()
	}
	// One client per process: its watches share one subscription.
	client := stagings.New(deps.NC, deps.JS, allowed, cfg.NATSTimeout)
	events, logs, logSub, ui, err := liveParts(cfg, deps, client)
	if err != nil {
		return nil, err
	}
	h := &Handler{closers: []func() error{unsubscribe(logSub), client.Close}}
	authn, err := auth.New(auth.Config{
		Mode:       cfg.AuthMode,
		TokensFile: cfg.AuthTokensFile,
		AdminRoles: cfg.AuthAdminRoles,
		OIDC: auth.OIDCConfig{
			Issuer:        cfg.OIDCIssuer,
			Audience:      cfg.OIDCAudience,
			UsernameClaim: cfg.OIDCUsernameClaim,
			RolesClaim:    cfg.OIDCRolesClaim,
			JWKSURL:       cfg.OIDCJWKSURL,
			FetchInterval: cfg.OIDCFetchInterval,
		},
	}, o.httpClient)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("gateway: %w", err), h.Close())
	}
	srv, err := api.New(api.Config{
		Client:             client,
		Log:                deps.Log.With("component", "http"),
		Tracer:             tp.Tracer("skao-staging/gateway"),
		Registerer:         reg,
		Gatherer:           o.gatherer,
		Health:             health,
		StageWaitTimeout:   cfg.StageWaitTimeout,
		MaxBodyBytes:       cfg.MaxBodyBytes,
		SourceRoot:         cfg.SourceRoot,
		UserAreaRoot:       cfg.UserAreaRoot,
		Demo:               cfg.Demo,
		PublicURL:          cfg.PublicURL,
		Downloads:          o.downloads,
		Routes:             o.routes,
		Auth:               authn,
		CORSAllowedOrigins: cfg.CORSAllowedOrigins,
		Idempotency:        idempotency.NewStore(deps.JS),
		JobMaxItems:        cfg.JobMaxItems,
		Events:             events,
		Logs:               logs,
		UI:                 ui,

		StorageBrowserDisabled: cfg.StorageBrowserDisabled,
	})
	if err != nil {
		return nil, errors.Join(err, h.Close())
	}
	h.Server = srv
	return h, nil
}

// Run serves the gateway on cfg.HTTPAddr until ctx is cancelled, then lets
// in-flight requests finish (a seed request may wait StageWaitTimeout for
// its outcome) and returns nil; it returns an error if it cannot start.
func Run(ctx context.Context, cfg Config, deps service.Deps, opts ...Option) error {
	if err := service.WithDefaults(&cfg); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	h, err := NewHandler(cfg, deps, opts...)
	if err != nil {
		return err
	}
	if deps.Health != nil {
		deps.Health.Add("nats", telemetry.NATSCheck(deps.NC))
	}
	err = service.Serve(ctx, deps.Log.With("component", "gateway"), "gateway", cfg.HTTPAddr, h, cfg.StageWaitTimeout+5*time.Second, deps.HTTP)
	return errors.Join(err, h.Close())
}
