package testenv

import (
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// StartProcess starts cmd and waits until a GET of readyURL answers 200;
// the test fails if the process ends first or is not ready within 30 s. It
// returns the process's output so far and to come. The process is killed
// when the test ends, and its output shown when the test failed.
func StartProcess(t testing.TB, cmd *exec.Cmd, readyURL string) *Buffer {
	t.Helper()
	name := filepath.Base(cmd.Path)
	logs := &Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, logs)
		}
	})
	Eventually(t, 30*time.Second, name+" ready ("+readyURL+")", func() bool {
		select {
		case <-exited:
			t.Fatalf("%s ended at start:\n%s", name, logs)
		default:
		}
		resp, err := http.Get(readyURL)
		if err != nil {
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return logs
}

// FreePort is a TCP port free on the loopback interface now, for a process
// the test starts that needs its port named in advance.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
