package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
)

func TestRunStartsAndStops(t *testing.T) {
	url := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	dir := t.TempDir()
	for _, d := range []string{"storage", "users"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{
			"-nats-url", url,
			"-source-root", filepath.Join(dir, "storage"),
			"-user-area-root", filepath.Join(dir, "users"),
			"-ops-addr", "127.0.0.1:0",
			"-download-addr", "127.0.0.1:0",
		}, io.Discard)
	}()
	testenv.Eventually(t, 10*time.Second, "the stager's consumer", func() bool {
		select {
		case err := <-done:
			t.Fatalf("run returned before its consumer existed: %v", err)
		default:
		}
		_, err := js.Consumer(ctx, contract.StreamRequests, contract.ConsumerStager)
		return err == nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestRunRefusesMissingRoots(t *testing.T) {
	url := natstest.Start(t)
	err := run(t.Context(), []string{"-nats-url", url, "-ops-addr", "127.0.0.1:0", "-download-addr", ""}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "STAGING_SOURCE_ROOT") {
		t.Fatalf("run = %v, want an error naming STAGING_SOURCE_ROOT", err)
	}
}
