package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/natstest"
)

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The binary starts against an external NATS, serves both listeners and
// stops cleanly on cancel.
func TestRunStartsAndStops(t *testing.T) {
	url := natstest.Start(t)
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-nats-url", url, "-http-addr", "127.0.0.1:0", "-ops-addr", "127.0.0.1:0"}, out)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), `"msg":"http_listening"`) < 2 {
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("listeners did not start:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
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

func TestRunFailsOnBadConfig(t *testing.T) {
	url := natstest.Start(t)
	err := run(context.Background(), []string{"-nats-url", url, "-allowed-methods", "scp", "-ops-addr", "127.0.0.1:0"}, &syncBuffer{})
	if err == nil || !strings.Contains(err.Error(), "ALLOWED_METHODS") {
		t.Errorf("run = %v, want an ALLOWED_METHODS error", err)
	}
}
