// Command stager runs the stager service alone, against an external NATS
// server: it stages files from the storage into the user area and serves
// download links.
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

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/stager"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "stager:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg struct {
		service.Base
		stager.Config
		OpsAddr string `env:"OPS_ADDR" envDefault:":9090" help:"listen address of /healthz, /readyz and /metrics"`
	}
	if err := service.Load(&cfg, "stager", args, stdout); err != nil {
		return err
	}
	rt, err := service.Start(ctx, "stager", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	service.LogConfig(rt.Log, cfg)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opsErr := make(chan error, 1)
	go func() {
		err := service.Serve(ctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), cfg.ShutdownGrace)
		if err != nil {
			cancel()
		}
		opsErr <- err
	}()
	err = stager.Run(ctx, cfg.Config, rt.Deps)
	cancel()
	return errors.Join(err, <-opsErr)
}
