package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/testenv"
)

type echoConfig struct {
	Greeting string `env:"GREETING" envDefault:"hello"`
	Token    string `env:"ECHO_TOKEN" secret:"true"`
}

// waitRun is a service that runs until ctx ends.
func waitRun(ctx context.Context, _ echoConfig, deps service.Deps) error {
	if deps.NC == nil || deps.JS == nil || deps.Log == nil || deps.Registerer == nil || deps.Health == nil {
		return errors.New("incomplete deps")
	}
	<-ctx.Done()
	return nil
}

// listening returns the address the server named what logged as its own
// in the JSON logs, or "" before it has.
func listening(logs, what string) string {
	for line := range strings.Lines(logs) {
		var rec struct{ Msg, Server, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "http_listening" && rec.Server == what {
			return rec.Addr
		}
	}
	return ""
}

func TestRunStandaloneServesOpsUntilCancelled(t *testing.T) {
	url := natstest.Start(t)
	logs := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	args := []string{"-nats-url", url, "-ops-addr", "127.0.0.1:0", "-echo-token", "s3cret-value"}
	go func() {
		done <- service.RunStandalone(ctx, "echo", args, logs, waitRun, func(c *echoConfig) { c.Greeting += " adjusted" })
	}()

	var addr string
	testenv.Eventually(t, 10*time.Second, "the ops listener", func() bool {
		select {
		case err := <-done:
			t.Fatalf("RunStandalone ended early: %v\n%s", err, logs)
		default:
		}
		addr = listening(logs.String(), "ops")
		return addr != ""
	})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}
	out := logs.String()
	if strings.Contains(out, "s3cret-value") {
		t.Errorf("the secret appears in the logs:\n%s", out)
	}
	for _, want := range []string{`"msg":"configuration"`, `"echo_token":"***"`, `"greeting":"hello adjusted"`, `"ops_addr":"127.0.0.1:0"`, `"service":"echo"`} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunStandalone = %v, want nil after cancel", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("RunStandalone did not return after cancel")
	}
}

func TestRunStandaloneFails(t *testing.T) {
	url := natstest.Start(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	errRun := errors.New("cannot start")
	tests := []struct {
		name    string
		args    []string
		run     func(context.Context, echoConfig, service.Deps) error
		wantErr func(error) bool
	}{
		{"help", []string{"-h"}, waitRun, func(err error) bool { return errors.Is(err, flag.ErrHelp) }},
		{"bad value", []string{"-nats-url", url, "-stream-replicas", "many"}, waitRun, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "stream-replicas")
		}},
		{"no nats", []string{"-nats-url", "nats://127.0.0.1:1"}, waitRun, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "connect to nats")
		}},
		{"service fails", []string{"-nats-url", url, "-ops-addr", "127.0.0.1:0"},
			func(context.Context, echoConfig, service.Deps) error { return errRun },
			func(err error) bool { return errors.Is(err, errRun) }},
		// The service stops when its ops listener cannot start.
		{"ops address taken", []string{"-nats-url", url, "-ops-addr", taken.Addr().String()}, waitRun, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "ops listener")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			err := service.RunStandalone(ctx, "echo", tt.args, io.Discard, tt.run)
			if !tt.wantErr(err) {
				t.Errorf("RunStandalone(%q) = %v", tt.args, err)
			}
			if ctx.Err() != nil {
				t.Errorf("RunStandalone(%q) returned only after the test's deadline", tt.args)
			}
		})
	}
}

// A failed run is logged as one JSON record with exit status 1; help and
// success exit 0 and log nothing.
func TestExit(t *testing.T) {
	tests := []struct {
		err        error
		wantStatus int
		wantLog    bool
	}{
		{nil, 0, false},
		{fmt.Errorf("flags: %w", flag.ErrHelp), 0, false},
		{errors.New("nats: no servers available for connection"), 1, true},
	}
	for _, tt := range tests {
		var buf strings.Builder
		if got := service.Exit(&buf, "stager", tt.err); got != tt.wantStatus {
			t.Errorf("Exit(%v) = %d, want %d", tt.err, got, tt.wantStatus)
		}
		if !tt.wantLog {
			if buf.Len() != 0 {
				t.Errorf("Exit(%v) logged %q, want nothing", tt.err, buf.String())
			}
			continue
		}
		var rec struct{ Level, Msg, Service, Error string }
		if err := json.Unmarshal([]byte(buf.String()), &rec); err != nil {
			t.Fatalf("Exit(%v) logged %q: not one JSON record: %v", tt.err, buf.String(), err)
		}
		if rec.Level != "ERROR" || rec.Msg != "fatal" || rec.Service != "stager" || rec.Error != tt.err.Error() {
			t.Errorf("Exit(%v) logged %+v, want an ERROR fatal record of the stager with the error", tt.err, rec)
		}
	}
}
