package service

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Standalone is the configuration a binary running one service alone adds
// to Base. (The all-in-one serves the ops endpoints on its own address.)
type Standalone struct {
	Base
	OpsAddr string `env:"OPS_ADDR" envDefault:":9090" help:"listen address of /healthz, /readyz and /metrics"`
}

// OpsGrace is how long in-flight ops requests (probes, scrapes) may take
// at shutdown: they answer at once.
const OpsGrace = 5 * time.Second

// Main is the whole of a service binary's main: it calls run with the
// command-line arguments and standard output, and a context that ends on
// SIGINT or SIGTERM; then it exits 1, with the error logged on standard
// error (see Exit), if run failed other than with flag.ErrHelp (-h). One
// place for this keeps every binary's exit status and signal handling
// alike.
func Main(name string, run func(ctx context.Context, args []string, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	os.Exit(Exit(os.Stderr, name, err))
}

// Exit returns the exit status of a run of the binary name that ended with
// err, and logs err on w as a JSON record (msg "fatal") when it is a
// failure: a configuration or start-up error is parsed by the log
// collector like every other line, though run's own logger is gone.
func Exit(w io.Writer, name string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	slog.New(slog.NewJSONHandler(w, nil)).Error("fatal", "service", name, "error", err.Error())
	return 1
}

// StoppedEarly reports err as nil when it only says that ctx was cancelled:
// a service asked to stop while it was still starting has not failed.
func StoppedEarly(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
