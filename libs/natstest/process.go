package natstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/skao/skao-staging/libs/testenv"
)

// ServerBinary finds the pinned nats-server where
// scripts/nats-test-server.sh installs it: in $TOOLS_BIN, else in the
// repository's .tools/bin. Without it the test is skipped, or fails when
// integration tests are required.
func ServerBinary(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("TOOLS_BIN")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), ".tools", "bin")
	}
	bin, err := filepath.Abs(filepath.Join(dir, "nats-server"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.Missing(t, "no pinned nats-server at %s (scripts/nats-test-server.sh install)", bin)
	}
	return bin
}

// repoRoot is the directory holding go.work, above the test's directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.work above the test's directory")
		}
		dir = up
	}
}

// StartProcess runs the pinned nats-server as a process of its own, with
// JetStream, on a free loopback port, conf (more of its configuration, such
// as an authorization block) added to its configuration file, and returns
// its client URL once it serves JetStream. It is killed when the test ends.
func StartProcess(t testing.TB, conf string) string {
	t.Helper()
	bin := ServerBinary(t)
	dir := t.TempDir()
	client, monitor := testenv.FreePort(t), testenv.FreePort(t)
	conf = fmt.Sprintf("listen: \"127.0.0.1:%d\"\nhttp: \"127.0.0.1:%d\"\njetstream { store_dir: %q }\n%s\n",
		client, monitor, filepath.Join(dir, "js"), conf)
	path := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.StartProcess(t, exec.Command(bin, "-c", path), fmt.Sprintf("http://127.0.0.1:%d/healthz?js-enabled-only=true", monitor))
	return fmt.Sprintf("nats://127.0.0.1:%d", client)
}
