package stager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
)

// The benchmarks below run the stager binary as a process against an
// embedded NATS server and compare it, in the same run, with cp, cp -r and
// nginx. They move gigabytes, so they run only when STAGING_BENCH_STAGER=1
// (scripts/bench/stager.sh sets it and sums the results up).

const (
	bigSize   = 1 << 30
	treeFiles = 10_000
	treeDirs  = 100
	treeFile  = 4 << 10
)

// benchEnv is a storage and a user area on the same filesystem, a NATS
// server and a stager process.
type benchEnv struct {
	js       jetstream.JetStream
	url      string
	bin      string
	storage  string
	userArea string
	n        int // names made so far, so every copy goes to a fresh name
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	if os.Getenv("STAGING_BENCH_STAGER") != "1" {
		b.Skip("set STAGING_BENCH_STAGER=1 (scripts/bench/stager.sh) to move gigabytes")
	}
	dir := b.TempDir()
	e := &benchEnv{url: natstest.Start(b), bin: buildStager(b), storage: filepath.Join(dir, "storage"), userArea: filepath.Join(dir, "users")}
	_, e.js = natstest.Connect(b, e.url)
	for _, d := range []string{e.storage, e.userArea} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { makeRemovable(b, e.userArea) })
	return e
}

func (e *benchEnv) fresh(prefix string) string {
	e.n++
	return fmt.Sprintf("%s-%d", prefix, e.n)
}

// writeBig writes a 1 GiB file of varied bytes (not sparse: a real copy).
func (e *benchEnv) writeBig(b *testing.B) {
	b.Helper()
	f, err := os.Create(filepath.Join(e.storage, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8)
	}
	for i := range bigSize / len(buf) {
		buf[0] = byte(i)
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	// On disk before anything is timed, so no writeback of it competes.
	if err := exec.Command("sync").Run(); err != nil {
		b.Fatal(err)
	}
}

// stage publishes a command and waits for its final event.
func (e *benchEnv) stage(b *testing.B, method contract.Method, src, rel string) contract.Event {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	cmd := contract.Command{SpecVersion: contract.SpecVersion, ID: uuid.NewString(), Method: method, Username: "alice", LocalPathOnStorage: src, RelativePath: rel}
	c, err := e.js.OrderedConsumer(ctx, contract.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{contract.EventSubject(cmd.ID)}})
	if err != nil {
		b.Fatal(err)
	}
	if err := bus.PublishCommand(ctx, e.js, cmd); err != nil {
		b.Fatal(err)
	}
	for {
		msg, err := c.Next(jetstream.FetchContext(ctx))
		if err != nil {
			b.Fatal(err)
		}
		var ev contract.Event
		if err := json.Unmarshal(msg.Data(), &ev); err != nil {
			b.Fatal(err)
		}
		if ev.Type.Terminal() {
			if ev.Type != contract.EventSucceeded {
				b.Fatalf("%s %s: %s %+v", method, src, ev.Type, ev.Error)
			}
			return ev
		}
	}
}

func runCmd(b *testing.B, name string, args ...string) {
	b.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func reportRSS(b *testing.B, p *process) {
	b.ReportMetric(float64(p.peakRSS(b))/(1<<20), "peak-RSS-MiB")
}

// BenchmarkLocalCopy1GiB: a local_copy command of a 1 GiB file, published
// to the succeeded event, against cp of the same file, and cp followed by
// an fsync of the copy (the stager fsyncs before it renames into place;
// stager-nosync runs it with STAGING_STAGER_SYNC_COPIES=false).
func BenchmarkLocalCopy1GiB(b *testing.B) {
	e := newBenchEnv(b)
	e.writeBig(b)
	dst := filepath.Join(e.userArea, "alice")
	if err := os.Mkdir(dst, 0o755); err != nil {
		b.Fatal(err)
	}
	timed := func(b *testing.B, copy func(name string)) {
		b.SetBytes(bigSize)
		// One untimed copy first: the first after the source was written
		// is slower, whoever makes it.
		warm := e.fresh("warm")
		copy(warm)
		if err := os.Remove(filepath.Join(dst, warm)); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			name := e.fresh("copy")
			copy(name)
			b.StopTimer()
			if err := os.Remove(filepath.Join(dst, name)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
	for _, sync := range []bool{true, false} {
		b.Run(map[bool]string{true: "stager", false: "stager-nosync"}[sync], func(b *testing.B) {
			p := startProcess(b, e.bin, e.url, e.storage, e.userArea, fmt.Sprintf("STAGING_STAGER_SYNC_COPIES=%t", sync))
			timed(b, func(name string) { e.stage(b, contract.MethodLocalCopy, "big.bin", name) })
			reportRSS(b, p)
		})
	}
	b.Run("cp", func(b *testing.B) {
		timed(b, func(name string) { runCmd(b, "cp", filepath.Join(e.storage, "big.bin"), filepath.Join(dst, name)) })
	})
	b.Run("cp+fsync", func(b *testing.B) {
		timed(b, func(name string) {
			runCmd(b, "cp", filepath.Join(e.storage, "big.bin"), filepath.Join(dst, name))
			runCmd(b, "sync", filepath.Join(dst, name))
		})
	})
}

// BenchmarkTree10k: a local_copy of a tree of 10,000 files of 4 KiB against
// cp -r, and cp -r followed by syncfs (the stager syncs the filesystem once
// before it renames the tree into place; stager-nosync does not);
// cpu-us/file is the stager process's CPU time per file. Every copy goes to
// a fresh name and nothing is removed until the end: on ext4 a tree made
// right after another was removed is much slower to make.
func BenchmarkTree10k(b *testing.B) {
	e := newBenchEnv(b)
	buf := make([]byte, treeFile)
	for d := range treeDirs {
		dir := filepath.Join(e.storage, "tree", fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range treeFiles / treeDirs {
			buf[0], buf[1] = byte(d), byte(f)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.dat", f)), buf, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	runCmd(b, "sync")
	dst := filepath.Join(e.userArea, "alice")
	if err := os.Mkdir(dst, 0o755); err != nil {
		b.Fatal(err)
	}
	timed := func(b *testing.B, copy func(name string)) {
		began := time.Now()
		for b.Loop() {
			copy(e.fresh("tree"))
		}
		b.ReportMetric(float64(treeFiles*b.N)/time.Since(began).Seconds(), "files/s")
	}
	for _, sync := range []bool{true, false} {
		b.Run(map[bool]string{true: "stager", false: "stager-nosync"}[sync], func(b *testing.B) {
			p := startProcess(b, e.bin, e.url, e.storage, e.userArea, fmt.Sprintf("STAGING_STAGER_SYNC_COPIES=%t", sync))
			cpu := p.cpuTime(b)
			timed(b, func(name string) { e.stage(b, contract.MethodLocalCopy, "tree", name) })
			b.ReportMetric(float64(p.cpuTime(b)-cpu)/float64(time.Microsecond)/float64(treeFiles*b.N), "cpu-us/file")
			reportRSS(b, p)
		})
	}
	b.Run("cp-r", func(b *testing.B) {
		timed(b, func(name string) { runCmd(b, "cp", "-r", filepath.Join(e.storage, "tree"), filepath.Join(dst, name)) })
	})
	b.Run("cp-r+syncfs", func(b *testing.B) {
		timed(b, func(name string) {
			runCmd(b, "cp", "-r", filepath.Join(e.storage, "tree"), filepath.Join(dst, name))
			runCmd(b, "sync", "-f", filepath.Join(dst, name))
		})
	})
}

// BenchmarkDownload1GiB: a 1 GiB file through the stager's download link,
// with the 2 MiB buffered copy (STAGING_DOWNLOAD_SENDFILE=false) and with
// sendfile (the default), against nginx serving the same file with
// sendfile on, and off with 1 MiB output buffers. The client, the same
// for all, reads through a 1 MiB buffer.
func BenchmarkDownload1GiB(b *testing.B) {
	e := newBenchEnv(b)
	e.writeBig(b)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	buf := make([]byte, 1<<20)
	get := func(b *testing.B, url string) {
		b.SetBytes(bigSize)
		for b.Loop() {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{resp.Body}, buf)
			resp.Body.Close()
			if err != nil || n != bigSize || resp.StatusCode != http.StatusOK {
				b.Fatalf("GET %s: %s, %d bytes, %v", url, resp.Status, n, err)
			}
		}
	}
	for _, sendfile := range []bool{false, true} {
		name := "stager-buffered"
		if sendfile {
			name = "stager-sendfile"
		}
		b.Run(name, func(b *testing.B) {
			p := startProcess(b, e.bin, e.url, e.storage, e.userArea, fmt.Sprintf("STAGING_DOWNLOAD_SENDFILE=%t", sendfile))
			ev := e.stage(b, contract.MethodDirectDownload, "big.bin", "big.bin")
			get(b, p.downloads+ev.DownloadURL)
			reportRSS(b, p)
		})
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		b.Log("SKIP nginx: not installed (apt-get install nginx-light)")
		return
	}
	for _, conf := range []struct{ name, directives string }{
		{"nginx-sendfile", "sendfile on;"},
		{"nginx-buffers", "sendfile off; output_buffers 1 1m;"},
	} {
		b.Run(conf.name, func(b *testing.B) {
			addr := startNginx(b, nginx, e.storage, conf.directives)
			get(b, "http://"+addr+"/big.bin")
		})
	}
}

// startNginx serves root on a loopback port with a temporary configuration
// and returns its address.
func startNginx(b *testing.B, bin, root, directives string) string {
	b.Helper()
	dir := b.TempDir()
	addr := freeAddr(b)
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s;
  %[4]s
  server { listen %[2]s; root %[3]s; }
}
`, dir, addr, root, directives)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Head("http://" + addr + "/big.bin")
		if err == nil {
			resp.Body.Close()
			return addr
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			b.Fatalf("nginx ended: %s\n%s", out, log)
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("nginx does not answer on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
