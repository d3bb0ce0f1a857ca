// Command jupyter-bridge runs the jupyter-bridge service alone, against an
// external NATS server: it uploads jupyter_copy requests into users'
// JupyterHub servers. The hub is named by JUPYTERHUB_URL and
// JUPYTERHUB_API_TOKEN, as JupyterHub names them for its services.
package main

import (
	"context"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/service"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
)

func main() { service.Main("jupyter-bridge", run) }

// run is the process from start to stop, in order.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	// 1. Configuration: STAGING_* variables, flags over them, then the
	// hub from JupyterHub's own variables where neither named it.
	var cfg struct {
		service.Standalone
		Bridge jupyterbridge.Config
	}
	if err := service.Load(&cfg, "jupyter-bridge", args, stdout); err != nil {
		return err
	}
	jupyterbridge.ApplyHubEnv(&cfg.Bridge)

	// 2. Logger, tracing, NATS with its streams; closed last.
	rt, err := service.Start(ctx, "jupyter-bridge", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	service.LogConfig(rt.Log, cfg)

	// 3. The ops server and the bridge side by side, until a signal ends
	// ctx or either fails, which stops the other. On the way out the
	// bridge stops taking commands and finishes those in hand; then
	// rt.Close flushes traces and drains NATS.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return service.Serve(ctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), service.OpsGrace, cfg.HTTP)
	})
	g.Go(func() error {
		// Asked to stop while still starting is no failure.
		return service.StoppedEarly(ctx, jupyterbridge.Run(ctx, cfg.Bridge, rt.Deps))
	})
	return g.Wait()
}
