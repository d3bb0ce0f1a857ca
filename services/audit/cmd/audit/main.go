// Command audit runs the staging audit alone, against an external NATS
// server and MySQL/MariaDB (or a SQLite file).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/audit"
)

type config struct {
	service.Base
	audit.Config
	OpsAddr string `env:"OPS_ADDR" envDefault:":9090" help:"address of /healthz, /readyz and /metrics"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "audit:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg config
	if err := service.Load(&cfg, "audit", args, stdout); err != nil {
		return err
	}
	rt, err := service.Start(ctx, "audit", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	service.LogConfig(rt.Log, cfg)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg     sync.WaitGroup
		opsErr error
	)
	wg.Go(func() {
		if opsErr = service.Serve(ctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), 5*time.Second); opsErr != nil {
			cancel()
		}
	})
	err = audit.Run(ctx, cfg.Config, rt.Deps)
	cancel()
	wg.Wait()
	return errors.Join(err, opsErr)
}
