// Command gateway runs the staging service's REST API against an external
// NATS server. Configuration comes from STAGING_* variables or the
// matching flags (gateway -h lists them).
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
	"github.com/skao/skao-staging/services/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "gateway:", err)
		stop()
		os.Exit(1)
	}
}

type config struct {
	service.Base
	gateway.Config
	OpsAddr string `env:"OPS_ADDR" envDefault:":9090" help:"address of the /healthz, /readyz and /metrics listener"`
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg config
	if err := service.Load(&cfg, "gateway", args, stdout); err != nil {
		return err
	}
	rt, err := service.Start(ctx, "gateway", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	service.LogConfig(rt.Log, cfg)

	// Either server failing stops the other, so the process never runs
	// half up.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		err := service.Serve(ctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), 5*time.Second)
		if err != nil {
			cancel()
		}
		errc <- err
	}()
	runErr := gateway.Run(ctx, cfg.Config, rt.Deps, gateway.WithGatherer(rt.Registry))
	cancel()
	return errors.Join(runErr, <-errc)
}
