// Command audit runs the staging audit alone, against an external NATS
// server and MySQL/MariaDB (or a SQLite file).
package main

import (
	"context"
	"io"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/audit"
)

func main() { service.Main("audit", run) }

func run(ctx context.Context, args []string, stdout io.Writer) error {
	return service.RunStandalone(ctx, "audit", args, stdout, audit.Run)
}
