// Command stager runs the stager service alone, against an external NATS
// server: it stages files from the storage into the user area and serves
// download links.
package main

import (
	"context"
	"io"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/stager"
)

func main() { service.Main("stager", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	return service.RunStandalone(ctx, "stager", args, stdout, stager.Run)
}
