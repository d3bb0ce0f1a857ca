// Command stagingd runs the whole staging system in one process: an
// embedded NATS server with JetStream (unless STAGING_NATS_URL names an
// external one), the gateway, the stager, the jupyter-bridge and the audit
// (SQLite under the data directory unless STAGING_MYSQL_DSN is set). It is
// what `make run` starts on a bare machine.
package main

import (
	"context"
	"io"
	"os"
	"runtime/debug"

	"github.com/skao/skao-staging/libs/service"
)

// gcPercent is the all-in-one's GOGC unless the environment sets one. Go's
// default, 100, lets the heap grow to twice what is live before collecting;
// under 256 concurrent requests that made the process peak about 15 MiB
// higher, for no CPU per request measurably saved (docs/benchmarks.md,
// Gateway).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	service.Main("stagingd", func(ctx context.Context, args []string, stdout io.Writer) error {
		return run(ctx, args, stdout, os.Stderr)
	})
}

// run is the whole program; banner receives the human-readable start-up
// text, logs the JSON log lines.
func run(ctx context.Context, args []string, banner, logs io.Writer) error {
	cfg, err := loadConfig(args, logs)
	if err != nil {
		return err
	}
	sys, err := start(ctx, cfg, logs)
	if err != nil {
		return err
	}
	printBanner(banner, sys)
	return sys.wait()
}
