package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/testenv"
)

// TestUIInBrowser drives the web UI in a real browser (Debian's chromium
// through playwright-core, scripts/ui-test) against the all-in-one in demo
// mode: stage a file and see it succeed live, in the history and in the
// logs. It needs node, chromium and scripts/ui-test/node_modules
// (scripts/ui-test/install.sh); without them it skips, or fails under
// STAGING_REQUIRE_INTEGRATION=1.
func TestUIInBrowser(t *testing.T) {
	dir, err := filepath.Abs("../../scripts/ui-test")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "node is not installed (scripts/ui-test/install.sh)")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		testenv.Missing(t, "no chromium at %s (scripts/ui-test/install.sh)", chromium)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		testenv.Missing(t, "playwright-core is not installed in scripts/ui-test (scripts/ui-test/install.sh)")
	}

	t.Setenv("STAGING_LOG_LEVEL", "info") // the UI shows the access log lines
	cfg, err := loadConfig([]string{
		"-demo",
		"-data-dir", t.TempDir(),
		"-http-addr", "127.0.0.1:0",
		"-nats-listen", "127.0.0.1:-1",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := start(ctx, cfg, testLog{t})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := sys.wait(); err != nil {
			t.Errorf("stagingd stopped with: %v", err)
		}
	})

	shot := os.Getenv("STAGING_UI_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "ui.png")
	}
	run, cancelRun := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelRun()
	cmd := exec.CommandContext(run, node, filepath.Join(dir, "ui.test.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STAGING_UI_URL="+sys.httpURL, "STAGING_UI_SCREENSHOT="+shot, "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("ui.test.mjs:\n%s", out)
	if err != nil {
		t.Fatalf("the UI test failed: %v", err)
	}
}
