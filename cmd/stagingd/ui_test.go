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
// through playwright-core, scripts/ui-test/ui.test.mjs, which lists what it
// checks) against the all-in-one in demo mode: the storage browser, live
// progress, download links, errors, history filters and paging, deep links,
// jobs, cancel, the log filters, a narrow window. It keeps its screenshots
// in $STAGING_UI_SCREENSHOTS (CI: out/ui-screenshots) or else in a
// temporary folder. It needs node, chromium and scripts/ui-test/node_modules
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

	// A link out of the storage, which the storage browser must show and
	// not follow.
	if err := os.Symlink(t.TempDir(), filepath.Join(sys.cfg.Stager.SourceRoot, "outside-link")); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("STAGING_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	run, cancelRun := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelRun()
	cmd := exec.CommandContext(run, node, filepath.Join(dir, "ui.test.mjs"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "STAGING_UI_URL="+sys.httpURL, "STAGING_UI_SCREENSHOTS="+shots, "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("ui.test.mjs:\n%s", out)
	t.Logf("screenshots in %s", shots)
	if err != nil {
		t.Fatalf("the UI test failed: %v", err)
	}
}
