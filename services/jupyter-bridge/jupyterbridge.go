// Package jupyterbridge is the service that carries out jupyter_copy: a
// durable JetStream consumer of its commands that makes sure the user's
// JupyterHub server runs and uploads the requested file or directory tree
// into it through the Jupyter Contents API, binary-safe and in chunks.
package jupyterbridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/libs/worker"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/jupytercopy"
)

// The variables JupyterHub itself uses to tell a service where the hub is
// and which token to use. They are read without the STAGING_ prefix: see
// ApplyHubEnv.
const (
	EnvHubURL   = "JUPYTERHUB_URL"
	EnvHubToken = "JUPYTERHUB_API_TOKEN"
)

// Config is the jupyter-bridge's configuration (environment variables with
// the STAGING_ prefix, or the matching flags), except for the hub's URL and
// token, which follow JupyterHub's own names (see ApplyHubEnv).
type Config struct {
	HubURL     string `env:"JUPYTERHUB_URL" help:"public base URL of the JupyterHub (also read from JUPYTERHUB_URL); empty disables jupyter_copy"`
	HubToken   string `env:"JUPYTERHUB_API_TOKEN" secret:"true" help:"JupyterHub API token of the bridge's service (also read from JUPYTERHUB_API_TOKEN)"`
	SourceRoot string `env:"SOURCE_ROOT" help:"the storage mount requests stage from (required), e.g. /mnt/storage_a"`
	// AllowedMethods is the same variable the stager and the gateway read:
	// a jupyter_copy command reaching the bridge at a site that does not
	// allow it is rejected.
	AllowedMethods []string      `env:"ALLOWED_METHODS" envDefault:"local_copy,local_symlink,local_hardlink,direct_download,jupyter_copy" envSeparator:"," help:"staging methods allowed at this site"`
	ChunkSize      int64         `env:"JUPYTER_CHUNK_SIZE" envDefault:"16777216" help:"bytes of a file sent per upload request (base64 makes the request about 4/3 of it)"`
	SpawnTimeout   time.Duration `env:"JUPYTER_SPAWN_TIMEOUT" envDefault:"2m" help:"how long a user's server may take to start"`
	Concurrency    int           `env:"JUPYTER_CONCURRENCY" envDefault:"2" help:"requests uploaded at once"`
	MaxAckPending  int           `env:"JUPYTER_MAX_ACK_PENDING" envDefault:"100" help:"requests out at once to all bridges together (a site-wide limit on the shared consumer, and so on the uploads the hub sees at once; each bridge takes at most JUPYTER_CONCURRENCY); set the same on every bridge"`
	AckWait        time.Duration `env:"JUPYTER_ACK_WAIT" envDefault:"60s" help:"how long a delivery may go unacknowledged before redelivery"`
	MaxDeliver     int           `env:"JUPYTER_MAX_DELIVER" envDefault:"5" help:"deliveries of one request before it fails"`
	StageTimeout   time.Duration `env:"JUPYTER_STAGE_TIMEOUT" envDefault:"6h" help:"longest one delivery of a request may take"`
	// Rucio resolves a request's DID (STAGING_RUCIO_*), as the stager's.
	Rucio rucio.Config
}

// ApplyHubEnv fills the hub's URL and token from JUPYTERHUB_URL and
// JUPYTERHUB_API_TOKEN where service.Load left them empty (so a flag or a
// STAGING_-prefixed variable wins). Call it right after service.Load.
func ApplyHubEnv(cfg *Config) {
	if cfg.HubURL == "" {
		cfg.HubURL = os.Getenv(EnvHubURL)
	}
	if cfg.HubToken == "" {
		cfg.HubToken = os.Getenv(EnvHubToken)
	}
}

// Run uploads requests until ctx is cancelled, then stops taking new ones,
// finishes those in hand and returns nil. Without a hub URL it still takes
// every jupyter_copy command and rejects it (see refuse). It fails when it
// cannot start.
func Run(ctx context.Context, cfg Config, deps service.Deps) error {
	log := deps.Log.With("component", "jupyter-bridge")
	allowed, err := contract.ParseMethodSet(cfg.AllowedMethods)
	if err != nil {
		return fmt.Errorf("allowed methods (STAGING_ALLOWED_METHODS): %w", err)
	}
	if cfg.HubURL == "" {
		return refuse(ctx, cfg, allowed, deps, log)
	}
	metrics := newMetrics(deps.Registerer)
	hub, err := hubclient.New(hubclient.Options{
		URL:       cfg.HubURL,
		Token:     cfg.HubToken,
		ChunkSize: cfg.ChunkSize,
		Observer:  metrics.observeHubCall,
		// Each call to the hub is a span of the request's trace.
		TracerProvider: deps.Tracer,
	})
	if err != nil {
		return fmt.Errorf("jupyterhub (JUPYTERHUB_URL, JUPYTERHUB_API_TOKEN): %w", err)
	}
	source, err := storage.Open(cfg.SourceRoot)
	if err != nil {
		return fmt.Errorf("source root (STAGING_SOURCE_ROOT): %w", err)
	}
	defer source.Close()

	copier := &jupytercopy.Copier{Source: source, SpawnTimeout: cfg.SpawnTimeout}
	if cfg.Rucio.Enabled() {
		c, err := rucio.New(cfg.Rucio, nil)
		if err != nil {
			return err
		}
		copier.Rucio = c
	}
	work := &upload{
		hub:     hub,
		copier:  copier,
		log:     log,
		metrics: metrics,
	}
	w, err := worker.New(workerOptions(cfg, allowed, work.stage, deps, log))
	if err != nil {
		return err
	}
	deps.Health.Add("jupyterhub", hub.Ping)
	deps.Health.Add("jupyter_source", func(context.Context) error {
		if _, err := source.OS().Stat("."); err != nil {
			return fmt.Errorf("source root: %w", err)
		}
		return nil
	})

	log.InfoContext(ctx, "jupyter_bridge_started", "hub_url", cfg.HubURL, "source_root", source.Dir(), "chunk_size", hub.ChunkSize())
	return w.Run(ctx)
}

// workerOptions are the options of the bridge's worker, with or without
// a hub.
func workerOptions(cfg Config, allowed contract.MethodSet, stage worker.StageFunc, deps service.Deps, log *slog.Logger) worker.Options {
	return worker.Options{
		Source:          "jupyter-bridge",
		Methods:         contract.MethodSet{contract.MethodJupyterCopy},
		Allowed:         allowed,
		Stage:           stage,
		JS:              deps.JS,
		Log:             log,
		Tracer:          deps.Tracer.Tracer("skao-staging/jupyter-bridge"),
		Registerer:      deps.Registerer,
		MetricPrefix:    "staging_jupyter",
		DurationBuckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		Durable:         contract.ConsumerJupyterBridge,
		Concurrency:     cfg.Concurrency,
		MaxAckPending:   cfg.MaxAckPending,
		AckWait:         cfg.AckWait,
		MaxDeliver:      cfg.MaxDeliver,
		Timeout:         cfg.StageTimeout,
	}
}

// refuse is the bridge of a site without a hub. It still consumes every
// jupyter_copy command, so none waits unseen in the work queue (and the
// gateway, which sees a worker for the method, accepts it), and rejects
// each with method_not_allowed before any work, as a site that does not
// allow the method would: the rejected event is the audit's record. Its
// readiness is unchanged; refusing is what it is there to do.
func refuse(ctx context.Context, cfg Config, allowed contract.MethodSet, deps service.Deps, log *slog.Logger) error {
	off := slices.DeleteFunc(slices.Clone(allowed), func(m contract.Method) bool { return m == contract.MethodJupyterCopy })
	never := func(context.Context, contract.Command, *worker.Reporter) (worker.Result, error) {
		return worker.Result{}, contract.Errorf(contract.CodeMethodNotAllowed, "jupyter_copy is off: the jupyter-bridge has no JupyterHub (JUPYTERHUB_URL)")
	}
	w, err := worker.New(workerOptions(cfg, off, never, deps, log))
	if err != nil {
		return err
	}
	log.WarnContext(ctx, "jupyter_copy_off", "reason", "JUPYTERHUB_URL is not set: every jupyter_copy command is rejected with method_not_allowed")
	return w.Run(ctx)
}

// upload carries out jupyter_copy for the shared worker.
type upload struct {
	hub     *hubclient.Client
	copier  *jupytercopy.Copier
	log     *slog.Logger
	metrics *metrics
}

// stage is the jupyter-bridge's worker.StageFunc: it reports every step of
// a server start as a message, and the upload's progress.
func (u *upload) stage(ctx context.Context, cmd contract.Command, report *worker.Reporter) (worker.Result, error) {
	if cmd.ExpectedAdler32 != "" {
		// The upload cannot be checked against it (what the user's server
		// stored is not read back), and a checksum asked for is never
		// silently ignored.
		return worker.Result{}, contract.Errorf(contract.CodeMalformed, "expected_adler32 is checked by local_copy only: jupyter_copy cannot verify what the user's server stored")
	}
	hub := u.hub
	if cmd.JupyterToken != "" {
		// The user's own token: the hub and the user's server then act
		// with the user's rights rather than the service's.
		hub = hub.WithToken(cmd.JupyterToken)
	}
	res, err := u.copier.Copy(ctx, hub, jupytercopy.Request{
		Username: cmd.Username,
		Source:   cmd.LocalPathOnStorage,
		DID:      cmd.DID,
		Target:   cmd.RelativePath,
		Resolved: report.Resolved,
	}, func(up jupytercopy.Update) {
		if up.Message != "" {
			report.Message(up.Message)
			return
		}
		report.Progress(up.Progress)
	})
	if res.ServerStarted {
		u.metrics.serverStarts.Inc()
		if res.StartDuration > 0 {
			u.metrics.startDuration.Observe(res.StartDuration.Seconds())
		}
		u.log.InfoContext(ctx, "jupyter_server_started", "request_id", cmd.ID, "username", cmd.Username, "duration", res.StartDuration.String())
	}
	if err != nil {
		return worker.Result{}, redact(err, cmd.JupyterToken)
	}
	out := worker.Result{Outcome: res.Outcome, Bytes: res.Bytes, Files: res.Files}
	if res.Outcome == contract.OutcomeAlreadyPresent {
		out.Message = fmt.Sprintf("%s is already present in the Jupyter server of %s; nothing uploaded", cmd.RelativePath, cmd.Username)
	} else {
		out.Message = fmt.Sprintf("uploaded %d files (%d bytes) to %s in the Jupyter server of %s", res.Files, res.Bytes, cmd.RelativePath, cmd.Username)
	}
	if res.Outcome == contract.OutcomeStaged {
		u.metrics.bytes.Add(float64(res.Bytes))
		u.metrics.files.Add(float64(res.Files))
	}
	return out, nil
}

// redact keeps a per-request token out of what the worker reports and
// logs. The hub client never puts a token into an error (it travels only in
// the Authorization header), so this is a last guard should a hub or proxy
// ever echo one back in an error body: the detail is masked, the code kept.
func redact(err error, token string) error {
	if token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	var masked error = errors.New(strings.ReplaceAll(err.Error(), token, "[redacted]"))
	if e, ok := errors.AsType[*contract.Error](err); ok {
		masked = contract.Errorf(e.Code, "%s", strings.ReplaceAll(e.Detail, token, "[redacted]"))
	}
	if bus.IsPermanent(err) {
		return bus.Permanent(masked)
	}
	return masked
}

// metrics are what the bridge counts beyond the request metrics of the
// shared worker.
type metrics struct {
	hubCalls      *prometheus.CounterVec
	hubDuration   *prometheus.HistogramVec
	serverStarts  prometheus.Counter
	startDuration prometheus.Histogram
	bytes         prometheus.Counter
	files         prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		hubCalls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_jupyter_hub_calls_total",
			Help: "HTTP calls to JupyterHub and users' servers, by endpoint and status code (error: no response).",
		}, []string{"endpoint", "status"}),
		hubDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "staging_jupyter_hub_call_duration_seconds",
			Help:    "Duration of HTTP calls to JupyterHub and users' servers, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9),
		}, []string{"endpoint"}),
		serverStarts: f.NewCounter(prometheus.CounterOpts{
			Name: "staging_jupyter_server_starts_total",
			Help: "Users' Jupyter servers the bridge had to start.",
		}),
		startDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "staging_jupyter_server_start_duration_seconds",
			Help:    "Time from asking for a user's server until it was ready.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 10),
		}),
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "staging_jupyter_uploaded_bytes_total",
			Help: "Bytes of staged items uploaded into users' Jupyter servers.",
		}),
		files: f.NewCounter(prometheus.CounterOpts{
			Name: "staging_jupyter_uploaded_files_total",
			Help: "Files uploaded into users' Jupyter servers.",
		}),
	}
}

// observeHubCall is a hubclient.Observer.
func (m *metrics) observeHubCall(endpoint, status string, d time.Duration) {
	m.hubCalls.WithLabelValues(endpoint, status).Inc()
	m.hubDuration.WithLabelValues(endpoint).Observe(d.Seconds())
}
