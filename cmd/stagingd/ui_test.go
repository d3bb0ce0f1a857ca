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
// progress, download links, a source by Rucio DID, errors, history filters
// and paging, deep links, jobs, cancel, lifetimes, the log filters, a
// narrow window. It keeps its screenshots in $STAGING_UI_SCREENSHOTS (CI:
// out/ui-screenshots) or else in a temporary folder. It needs node, chromium and
// scripts/ui-test/node_modules (scripts/ui-test/install.sh); without them
// it skips, or fails under STAGING_REQUIRE_INTEGRATION=1.
func TestUIInBrowser(t *testing.T) {
	ui := newUITest(t)
	sys := startForUI(t, "-demo")
	// A link out of the storage, which the storage browser must show and
	// not follow.
	if err := os.Symlink(t.TempDir(), filepath.Join(sys.cfg.Stager.SourceRoot, "outside-link")); err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("STAGING_UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	ui.run(t, "ui.test.mjs", "STAGING_UI_URL="+sys.httpURL, "STAGING_UI_SCREENSHOTS="+shots)
	t.Logf("screenshots in %s", shots)
}

// TestUIInBrowserWithAuth drives the web UI with authentication on
// (scripts/ui-test/auth.test.mjs): signing in with a token, live events
// with it, a user held to her own history, an admin choosing the user.
func TestUIInBrowserWithAuth(t *testing.T) {
	ui := newUITest(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("alice-ui-token alice\nops-ui-token ops admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sys := startForUI(t, "-auth-mode", "tokens", "-auth-tokens-file", tokens)
	ui.run(t, "auth.test.mjs", "STAGING_UI_URL="+sys.httpURL)
}

// uiTest is what running a browser test script takes.
type uiTest struct{ dir, node, chromium string }

func newUITest(t *testing.T) uiTest {
	t.Helper()
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
	return uiTest{dir: dir, node: node, chromium: chromium}
}

// startForUI starts the all-in-one with args on free ports.
func startForUI(t *testing.T, args ...string) *system {
	t.Helper()
	t.Setenv("STAGING_LOG_LEVEL", "info") // the UI shows the access log lines
	cfg, err := loadConfig(append([]string{
		"-data-dir", t.TempDir(),
		"-http-addr", "127.0.0.1:0",
		"-nats-listen", "127.0.0.1:-1",
	}, args...), io.Discard)
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
	return sys
}

// run runs script with env added and fails the test when it fails.
func (u uiTest) run(t *testing.T, script string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.node, filepath.Join(u.dir, script))
	cmd.Dir = u.dir
	cmd.Env = append(append(os.Environ(), "CHROMIUM="+u.chromium), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", script, out)
	if err != nil {
		t.Fatalf("%s failed: %v", script, err)
	}
}
