package stager_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/cputime"
	"github.com/skao/skao-staging/libs/testenv"
)

// buildStager builds the stager binary into a temporary directory.
func buildStager(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stager")
	out, err := exec.Command("go", "build", "-o", bin, "./cmd/stager").CombinedOutput()
	if err != nil {
		t.Fatalf("go build the stager: %v\n%s", err, out)
	}
	return bin
}

// process is the stager binary running as a process of its own.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	logs *testenv.Buffer
	// downloads is the base URL of its download listener.
	downloads string
}

// freeAddr returns a loopback address no one listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
}

// startProcess runs bin against the NATS server at url with the storage
// and user area given, plus env (STAGING_*=... settings), and waits until
// it has started. It is killed when the test ends.
func startProcess(t testing.TB, bin, url, storage, users string, env ...string) *process {
	t.Helper()
	p := &process{done: make(chan struct{}), logs: &testenv.Buffer{}}
	dl := freeAddr(t)
	p.downloads = "http://" + dl
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(),
		"STAGING_NATS_URL="+url,
		"STAGING_SOURCE_ROOT="+storage,
		"STAGING_USER_AREA_ROOT="+users,
		"STAGING_OPS_ADDR=127.0.0.1:0",
		"STAGING_DOWNLOAD_ADDR="+dl,
		"STAGING_LOG_LEVEL=warn",
	)
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("stager process output:\n%s", p.logs)
		}
	})
	testenv.Eventually(t, 20*time.Second, "the stager process's download listener", func() bool {
		select {
		case <-p.done:
			t.Fatalf("the stager process ended at start:\n%s", p.logs)
		default:
		}
		c, err := net.Dial("tcp", dl)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *process) kill(t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Errorf("kill the stager process: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Error("the stager process did not end after SIGKILL")
	}
}

// peakRSS is the process's peak resident set size (VmHWM), in bytes.
func (p *process) peakRSS(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
	return 0
}

// cpuTime is the CPU time the process has used, user and system.
func (p *process) cpuTime(t testing.TB) time.Duration {
	t.Helper()
	d, err := cputime.Process(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
