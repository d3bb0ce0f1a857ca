// Command gateway runs the staging service's REST API against an external
// NATS server. Configuration comes from STAGING_* variables or the
// matching flags (gateway -h lists them).
package main

import (
	"context"
	"io"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/gateway"
)

func main() { service.Main("gateway", run) }

// run serves the API, which has /healthz, /readyz and /metrics of its own
// (the process's registry, deps.Registerer), besides the ops listener.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	return service.RunStandalone(ctx, "gateway", args, stdout, func(ctx context.Context, cfg gateway.Config, deps service.Deps) error {
		return gateway.Run(ctx, cfg, deps)
	})
}
