// Command gateway runs the staging service's REST API against an external
// NATS server. Configuration comes from STAGING_* variables or the
// matching flags (gateway -h lists them).
package main

import (
	"context"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/gateway"
)

func main() { service.Main("gateway", run) }

// run starts the gateway in order: configuration; the runtime (logger,
// tracing, NATS with the streams in place, metrics, health); then the API
// and the ops listener side by side, until a signal or the first of them
// fails, which stops the other. On the way out the API lets its requests
// finish and ends its subscriptions (gateway.Run), then the runtime
// flushes traces and drains NATS (rt.Close).
func run(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg struct {
		service.Standalone
		Gateway gateway.Config
	}
	if err := service.Load(&cfg, "gateway", args, stdout); err != nil {
		return err
	}
	rt, err := service.Start(ctx, "gateway", cfg.Base, stdout)
	if err != nil {
		return err
	}
	defer rt.Close(ctx)
	service.LogConfig(rt.Log, cfg)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gateway.Run(gctx, cfg.Gateway, rt.Deps) })
	g.Go(func() error {
		return service.Serve(gctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), service.OpsGrace, cfg.HTTP)
	})
	return service.StoppedEarly(ctx, g.Wait())
}
