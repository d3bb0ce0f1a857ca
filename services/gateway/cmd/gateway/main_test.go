package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
)

// The binary starts against an external NATS, serves both listeners, the
// API's with the ops endpoints too, and stops cleanly on cancel.
func TestRunStartsAndStops(t *testing.T) {
	url := natstest.Start(t)
	out := &testenv.Buffer{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats-url", url, "-http-addr", "127.0.0.1:0", "-ops-addr", "127.0.0.1:0"}, out)
	}()
	testenv.Eventually(t, 10*time.Second, "both listeners", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out)
		default:
		}
		return strings.Count(out.String(), `"msg":"http_listening"`) == 2
	})
	for _, server := range []string{"gateway", "ops"} {
		addr := listening(out.String(), server)
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /metrics on the %s listener = %d, want 200", server, resp.StatusCode)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run = %v, want nil", err)
		}
	case <-time.After(45 * time.Second):
		t.Fatal("run did not stop")
	}
}

// listening returns the address the server logged it listens on.
func listening(logs, server string) string {
	for line := range strings.Lines(logs) {
		if strings.Contains(line, `"msg":"http_listening"`) && strings.Contains(line, `"server":"`+server+`"`) {
			_, addr, _ := strings.Cut(line, `"addr":"`)
			addr, _, _ = strings.Cut(addr, `"`)
			return addr
		}
	}
	return ""
}

func TestRunFailsOnBadConfig(t *testing.T) {
	url := natstest.Start(t)
	err := run(t.Context(), []string{"-nats-url", url, "-allowed-methods", "scp", "-ops-addr", "127.0.0.1:0"}, &testenv.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "ALLOWED_METHODS") {
		t.Errorf("run = %v, want an ALLOWED_METHODS error", err)
	}
}
