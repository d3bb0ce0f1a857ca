// Command stager runs the stager service alone, against an external NATS
// server: it stages files from the storage into the user area and serves
// download links.
package main

import (
	"context"
	"io"

	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/stager"
)

func main() { service.Main("stager", run) }

// run is the stager's life, in order. Start: configuration, the runtime
// (logger, tracing, NATS and the streams), the configuration logged, then
// the ops endpoints and the stager side by side. Stop, when ctx ends
// (SIGINT, SIGTERM) or either of the two fails: the stager stops taking
// requests and finishes those in hand, the ops server closes, and the
// runtime closes last (traces flushed, NATS drained).
func run(ctx context.Context, args []string, stdout io.Writer) error {
	var cfg struct {
		service.Standalone
		Stager stager.Config
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

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return service.Serve(ctx, rt.Log, "ops", cfg.OpsAddr, rt.OpsHandler(), service.OpsGrace, cfg.HTTP)
	})
	g.Go(func() error {
		// Asked to stop while still starting is no failure.
		return service.StoppedEarly(ctx, stager.Run(ctx, cfg.Stager, rt.Deps))
	})
	return g.Wait()
}
