package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/testenv"
)

// TestRunPrintsWhatToTry runs the program as `make run` does (on free
// ports) and checks that the banner's URL answers and that it stops cleanly.
func TestRunPrintsWhatToTry(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	banner := &testenv.Buffer{}
	done := make(chan error, 1)
	dataDir := t.TempDir()
	go func() {
		done <- run(ctx, []string{"-data-dir", dataDir, "-http-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0", "-log-level", "warn"}, banner, io.Discard)
	}()
	url := regexp.MustCompile(`skao-staging is running: (http://\S+)`)
	var base string
	testenv.Eventually(t, 20*time.Second, "the banner", func() bool {
		if m := url.FindStringSubmatch(banner.String()); m != nil {
			base = m[1]
			return true
		}
		return false
	})
	for _, want := range []string{"NATS (embedded):", "curl -s -X POST " + base + "/api/v1/stagings", "sample/hello.txt"} {
		if !strings.Contains(banner.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	// Without authentication (the demo) the NATS server stays open, as
	// the banner's curl lines and the README's nats examples expect.
	if strings.Contains(banner.String(), "NATS key file") {
		t.Errorf("banner names a NATS key file with authentication off:\n%s", banner)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "nats-admin.nk")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("NATS key file with authentication off: %v, want none", err)
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /readyz = %d, want 200", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run returned %v after cancel, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop after cancel")
	}
}

func TestRunHelp(t *testing.T) {
	var usage strings.Builder
	err := run(t.Context(), []string{"-h"}, io.Discard, &usage)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run -h = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-data-dir", "-nats-url", "-mysql-dsn", "-source-root"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %s", want)
		}
	}
}
