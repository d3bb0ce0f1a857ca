// Command jupyter-bridge runs the jupyter-bridge service alone, against an
// external NATS server: it uploads jupyter_copy requests into users'
// JupyterHub servers. The hub is named by JUPYTERHUB_URL and
// JUPYTERHUB_API_TOKEN, as JupyterHub names them for its services.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/skao/skao-staging/libs/service"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "jupyter-bridge:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg struct {
		service.Base
		jupyterbridge.Config
		OpsAddr string `env:"OPS_ADDR" envDefault:":9090" help:"listen address of /healthz, /readyz and /metrics"`
	}
	if err := service.Load(&cfg, "jupyter-bridge", args, stdout); err != nil {
		return err
	}
	jupyterbridge.ApplyHubEnv(&cfg.Config)
	rt, err := service.Start(ctx, "jupyter-bridge", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	service.LogConfig(rt.Log, cfg)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opsErr := make(chan error, 1)
	go func() {
		err := service.Serve(ctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), 5*time.Second)
		if err != nil {
			cancel()
		}
		opsErr <- err
	}()
	err = jupyterbridge.Run(ctx, cfg.Config, rt.Deps)
	cancel()
	return errors.Join(err, <-opsErr)
}
