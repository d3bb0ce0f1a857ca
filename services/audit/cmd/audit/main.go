// Command audit runs the staging audit alone, against an external NATS
// server and MySQL/MariaDB (or a SQLite file).
package main

import (
	"context"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/audit"
)

func main() { service.Main("audit", run) }

// run is the process from start to stop, in order.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	// 1. Configuration: STAGING_* variables, flags over them.
	var cfg struct {
		service.Standalone
		Audit audit.Config
	}
	if err := service.Load(&cfg, "audit", args, stdout); err != nil {
		return err
	}

	// 2. Logger, tracing, NATS with its streams; closed last.
	rt, err := service.Start(ctx, "audit", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	service.LogConfig(rt.Log, cfg)

	// 3. The ops server and the audit side by side, until a signal ends
	// ctx or either fails, which stops the other. On the way out the
	// audit finishes its batch in hand and the queries received; then
	// rt.Close flushes traces and drains NATS.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return service.Serve(ctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), service.OpsGrace, cfg.HTTP)
	})
	g.Go(func() error {
		// Asked to stop while still starting is no failure.
		return service.StoppedEarly(ctx, audit.Run(ctx, cfg.Audit, rt.Deps))
	})
	return g.Wait()
}
