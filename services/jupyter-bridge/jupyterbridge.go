// Package jupyterbridge is the service that carries out jupyter_copy: a
// durable JetStream consumer of its commands that makes sure the user's
// JupyterHub server runs and uploads the requested file or directory tree
// into it through the Jupyter Contents API, binary-safe and in chunks.
package jupyterbridge

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/jupytercopy"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/worker"
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
	HubURL       string        `env:"JUPYTERHUB_URL" help:"public base URL of the JupyterHub (also read from JUPYTERHUB_URL); empty disables jupyter_copy"`
	HubToken     string        `env:"JUPYTERHUB_API_TOKEN" secret:"true" help:"JupyterHub API token of the bridge's service (also read from JUPYTERHUB_API_TOKEN)"`
	SourceRoot   string        `env:"SOURCE_ROOT" help:"the storage mount requests stage from (required), e.g. /mnt/storage_a"`
	ChunkSize    int64         `env:"JUPYTER_CHUNK_SIZE" envDefault:"16777216" help:"bytes of a file sent per upload request (base64 makes the request about 4/3 of it)"`
	SpawnTimeout time.Duration `env:"JUPYTER_SPAWN_TIMEOUT" envDefault:"2m" help:"how long a user's server may take to start"`
	Concurrency  int           `env:"JUPYTER_CONCURRENCY" envDefault:"2" help:"requests uploaded at once"`
	AckWait      time.Duration `env:"JUPYTER_ACK_WAIT" envDefault:"60s" help:"how long a delivery may go unacknowledged before redelivery"`
	MaxDeliver   int           `env:"JUPYTER_MAX_DELIVER" envDefault:"5" help:"deliveries of one request before it fails"`
	StageTimeout time.Duration `env:"JUPYTER_STAGE_TIMEOUT" envDefault:"6h" help:"longest one delivery of a request may take"`
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
// finishes those in hand and returns nil. Without a hub URL it consumes
// nothing and only waits for ctx, so a process can run without a hub. It
// fails when it cannot start.
func Run(ctx context.Context, cfg Config, deps service.Deps) error {
	log := deps.Log.With("component", "jupyter-bridge")
	if cfg.HubURL == "" {
		log.WarnContext(ctx, "jupyter_copy disabled: JUPYTERHUB_URL not set")
		<-ctx.Done()
		return nil
	}
	metrics, err := worker.NewMetrics(deps.Registerer)
	if err != nil {
		return err
	}
	hub, err := hubclient.New(hubclient.Options{
		URL:       cfg.HubURL,
		Token:     cfg.HubToken,
		ChunkSize: cfg.ChunkSize,
		Observer:  metrics.ObserveHubCall,
	})
	if err != nil {
		return fmt.Errorf("jupyterhub (JUPYTERHUB_URL, JUPYTERHUB_API_TOKEN): %w", err)
	}
	source, err := storage.Open(cfg.SourceRoot)
	if err != nil {
		return fmt.Errorf("source root (STAGING_SOURCE_ROOT): %w", err)
	}
	defer source.Close()

	w := &worker.Worker{
		JS:         deps.JS,
		Hub:        hub,
		Copier:     &jupytercopy.Copier{Source: source, SpawnTimeout: cfg.SpawnTimeout},
		Log:        log,
		Tracer:     deps.Tracer.Tracer("skao-staging/jupyter-bridge"),
		Metrics:    metrics,
		MaxDeliver: cfg.MaxDeliver,
	}
	concurrency := max(cfg.Concurrency, 1)
	consumer, err := bus.EnsureConsumer(ctx, deps.JS, bus.ConsumerOptions{
		Stream:         contract.StreamRequests,
		Durable:        contract.ConsumerJupyterBridge,
		FilterSubjects: []string{contract.RequestSubject(contract.MethodJupyterCopy)},
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		MaxAckPending:  concurrency * 2,
	})
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

	policy := bus.AckPolicy{
		Log:        log,
		AckWait:    cfg.AckWait,
		MaxDeliver: cfg.MaxDeliver,
		Timeout:    cfg.StageTimeout,
		OnFailure:  w.OnFailure,
	}
	log.InfoContext(ctx, "jupyter_bridge_started", "hub_url", cfg.HubURL, "source_root", source.Dir(), "chunk_size", hub.ChunkSize())
	err = bus.Consume(ctx, consumer, concurrency, func(ctx context.Context, msg jetstream.Msg) {
		policy.Handle(ctx, msg, w.Handle)
	})
	if err != nil {
		return fmt.Errorf("consume jupyter_copy commands: %w", err)
	}
	return nil
}
