package main

// The gateway benchmark whole: its load generator, the modes it drives
// (seed, native, SSE, download) and its report are one harness, read
// together when a figure in docs/benchmarks.md is questioned.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/cputime"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/stager"
)

// TestGatewayBench is the gateway's end-to-end benchmark (issue 4), run by
// scripts/bench/gateway.sh (`make bench`) and skipped otherwise. Each run
// starts a fresh all-in-one as a built stagingd subprocess (so that its
// peak RSS, VmHWM, is the process's own), stages distinct 4 KiB files with
// local_copy at each concurrency, through the seed's waiting POST
// /stage_data and through POST /api/v1/stagings followed by the request's
// SSE stream, checks every copy on disk and every request in the audit as
// succeeded, and then compares a 1 GiB download through the gateway with
// the stager's own download handler. Medians over the runs are printed as
// a Markdown table. Mode bare sends the same seed requests, in the same
// run, through the bare flow (bareflow_test.go): the baseline that shows
// what the contract's messages, copies and audit writes alone cost here.
//
// Settings (environment): STAGING_BENCH=1 to run; STAGING_BENCH_RUNS (3);
// STAGING_BENCH_LEVELS (1,32,256); STAGING_BENCH_MODES (seed,sse,bare);
// STAGING_BENCH_REQUESTS (3000; concurrency 1 does a tenth);
// STAGING_BENCH_DOWNLOAD_MIB (1024, 0: skip); STAGING_BENCH_BIN (a built
// stagingd; default: built here); STAGING_BENCH_INPROCESS=1 runs the
// all-in-one inside the test process instead, for `go test -cpuprofile`
// (no RSS or CPU figure then), and STAGING_BENCH_HEAPPROFILE=<file> there
// writes a heap profile half-way through each step;
// STAGING_BENCH_GATEWAY_BIN (a built standalone gateway) or
// STAGING_BENCH_GATEWAY=1 (built here) sends the requests through a
// standalone gateway process on stagingd's NATS server and reports its peak
// RSS too.
func TestGatewayBench(t *testing.T) {
	if os.Getenv("STAGING_BENCH") == "" {
		t.Skip("benchmark: set STAGING_BENCH=1 or run scripts/bench/gateway.sh")
	}
	p := benchParamsFromEnv(t)
	bin := ""
	if !p.inProcess {
		bin = benchBinary(t)
	}
	if p.gatewayBin == "" && os.Getenv("STAGING_BENCH_GATEWAY") == "1" && !p.inProcess {
		p.gatewayBin = filepath.Join(t.TempDir(), "gateway")
		build := exec.Command("go", "build", "-trimpath", "-o", p.gatewayBin, "../../services/gateway/cmd/gateway")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			t.Fatalf("go build ./services/gateway/cmd/gateway: %v", err)
		}
	}
	var all []benchResult
	var downloads []downloadResult
	for run := 1; run <= p.runs; run++ {
		res, dl := benchRun(t, p, bin, run)
		all = append(all, res...)
		downloads = append(downloads, dl...)
	}
	report := benchReport(p, all, downloads)
	t.Log("\n" + report)
	if out := os.Getenv("STAGING_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
}

type benchParams struct {
	runs, requests, downloadMiB int
	levels                      []int
	modes                       []string
	inProcess                   bool
	// gatewayBin, when set, is a built standalone gateway: the requests go
	// through it, on stagingd's NATS server, and its own peak RSS is
	// reported beside stagingd's.
	gatewayBin string
}

func benchParamsFromEnv(t *testing.T) benchParams {
	t.Helper()
	p := benchParams{
		runs:        envInt(t, "STAGING_BENCH_RUNS", 3, 1),
		requests:    envInt(t, "STAGING_BENCH_REQUESTS", 3000, 10),
		downloadMiB: envInt(t, "STAGING_BENCH_DOWNLOAD_MIB", 1024, 0),
		modes:       strings.Split(orDefault(os.Getenv("STAGING_BENCH_MODES"), "seed,sse,bare"), ","),
		inProcess:   os.Getenv("STAGING_BENCH_INPROCESS") == "1",
		gatewayBin:  os.Getenv("STAGING_BENCH_GATEWAY_BIN"),
	}
	for _, s := range strings.Split(orDefault(os.Getenv("STAGING_BENCH_LEVELS"), "1,32,256"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			t.Fatalf("STAGING_BENCH_LEVELS: %q is not a concurrency", s)
		}
		p.levels = append(p.levels, n)
	}
	for _, m := range p.modes {
		if m != "seed" && m != "sse" && m != "bare" {
			t.Fatalf("STAGING_BENCH_MODES: %q is not seed, sse or bare", m)
		}
	}
	return p
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// requestsAt is how many requests one step sends: a tenth at concurrency
// 1, which would otherwise dominate the run's time.
func (p benchParams) requestsAt(concurrency int) int {
	if concurrency == 1 {
		return max(p.requests/10, 10)
	}
	return p.requests
}

// benchResult is one step: one mode at one concurrency in one run.
type benchResult struct {
	run         int
	mode        string
	concurrency int
	requests    int
	elapsed     time.Duration
	p50, p99    time.Duration
	// hwm is the process's peak RSS (VmHWM) after the step, in bytes: the
	// peak so far, of the whole all-in-one. 0 in process.
	hwm int64
	// gatewayHWM is the standalone gateway's VmHWM, when one ran.
	gatewayHWM int64
	// cpu is the CPU time (user and system) the process spent in the
	// step: with other work on the machine, CPU per request varies far
	// less than requests per second. 0 in process. With a standalone
	// gateway, its CPU time is included.
	cpu time.Duration
}

func (r benchResult) perSecond() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// summary is the step's line in the benchmark's log.
func (r benchResult) summary() string {
	gw := ""
	if r.gatewayHWM > 0 {
		gw = fmt.Sprintf(" gateway VmHWM %.1f MiB", float64(r.gatewayHWM)/(1<<20))
	}
	return fmt.Sprintf("run %d %s c=%d: %d requests in %s: %.0f/s p50 %s p99 %s VmHWM %.1f MiB%s CPU %.2f ms/request",
		r.run, r.mode, r.concurrency, r.requests, r.elapsed.Round(time.Millisecond), r.perSecond(),
		r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond), float64(r.hwm)/(1<<20), gw,
		float64(r.cpu.Microseconds())/1000/float64(r.requests))
}

type downloadResult struct {
	via     string // gateway or stager
	bytes   int64
	elapsed time.Duration
}

// benchTarget is a running all-in-one.
type benchTarget struct {
	httpURL string
	natsURL string
	dataDir string
	pid     int // 0 in process
	// heapProfile, in process, is where each step writes a heap profile
	// half-way through (the last step's stays).
	heapProfile string
	stop        func()
}

const benchFileSize = 4096

// benchRun starts a fresh all-in-one, runs every step and the download
// comparison, and checks the audit.
func benchRun(t *testing.T, p benchParams, bin string, run int) ([]benchResult, []downloadResult) {
	t.Helper()
	dir := t.TempDir()
	steps := 0
	for _, c := range p.levels {
		steps += p.requestsAt(c) * len(p.modes)
	}
	const warmup = 64
	writeBenchFiles(t, filepath.Join(dir, "storage", "bench"), steps+warmup)
	var tg benchTarget
	if p.inProcess {
		tg = startInProcess(t, dir)
	} else {
		tg = startSubprocess(t, bin, dir)
	}
	defer tg.stop()
	// api serves the requests: stagingd's own gateway, or a standalone one.
	api := tg
	if p.gatewayBin != "" {
		api = startGateway(t, p.gatewayBin, tg)
		defer api.stop()
	}
	cpuOf := func() time.Duration {
		if api.pid == tg.pid {
			return processCPU(t, tg.pid)
		}
		return processCPU(t, tg.pid) + processCPU(t, api.pid)
	}
	// The bare flow, the baseline, takes the same seed requests in a
	// process of its own.
	var bare benchTarget
	if slices.Contains(p.modes, "bare") {
		bare = startBareFlow(t, dir)
		defer bare.stop()
	}

	client := &http.Client{
		Timeout:   time.Minute,
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute},
	}
	next := 0
	take := func(n int) int { first := next; next += n; return first }

	// Warm up connections, the stager's consumer and the audit.
	runStep(t, client, api, "seed", "warmup", 8, take(warmup), warmup)

	var results []benchResult
	expected := map[string]int{}
	for _, c := range p.levels {
		for _, mode := range p.modes {
			n := p.requestsAt(c)
			user := fmt.Sprintf("bench-%s-c%d", mode, c)
			if mode == "bare" {
				r := bareStep(t, client, bare, user, c, take(n), n)
				r.run = run
				t.Log(r.summary())
				results = append(results, r)
				continue
			}
			cpu0 := cpuOf()
			elapsed, lat := runStep(t, client, api, mode, user, c, take(n), n)
			cpu := cpuOf() - cpu0
			checkCopies(t, tg.dataDir, user, n)
			expected[user] = n
			r := benchResult{run: run, mode: mode, concurrency: c, requests: n, elapsed: elapsed,
				p50: percentile(lat, 50), p99: percentile(lat, 99), hwm: peakRSS(t, tg.pid), cpu: cpu}
			if api.pid != tg.pid {
				r.gatewayHWM = peakRSS(t, api.pid)
			}
			t.Log(r.summary())
			results = append(results, r)
		}
	}
	for user, n := range expected {
		checkAudit(t, client, api.httpURL, user, n)
	}
	var dl []downloadResult
	if p.downloadMiB > 0 {
		dl = benchDownloads(t, client, tg, int64(p.downloadMiB)<<20)
	}
	return results, dl
}

// writeBenchFiles writes n distinct 4 KiB files 0.dat ... under dir.
func writeBenchFiles(t *testing.T, dir string, n int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	filler := bytes.Repeat([]byte("skao-staging benchmark data\n"), benchFileSize/28+1)
	for i := range n {
		data := make([]byte, 0, benchFileSize)
		data = fmt.Appendf(data, "file %d\n", i)
		data = append(data, filler[:benchFileSize-len(data)]...)
		if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)+".dat"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	bannerURL  = regexp.MustCompile(`skao-staging is running: (http://\S+)`)
	bannerNATS = regexp.MustCompile(`NATS \(embedded\):\s+(\S+)`)
)

// startSubprocess runs bin as `make run` does, on free ports, with env
// added to the test's environment, and waits for its banner.
func startSubprocess(t *testing.T, bin, dir string, env ...string) benchTarget {
	t.Helper()
	cmd := exec.Command(bin, "-data-dir", dir, "-http-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0", "-log-level", "warn")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stop := startProcess(t, cmd, filepath.Join(dir, "stagingd.log"))
	found := make(chan [2]string, 1)
	go func() {
		var urls [2]string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := bannerURL.FindStringSubmatch(sc.Text()); m != nil {
				urls[0] = m[1]
			}
			if m := bannerNATS.FindStringSubmatch(sc.Text()); m != nil {
				urls[1] = m[1]
				found <- urls // the NATS line follows the URL's
			}
		}
	}()
	select {
	case u := <-found:
		waitReady(t, u[0])
		return benchTarget{httpURL: u[0], natsURL: u[1], dataDir: dir, pid: cmd.Process.Pid, stop: stop}
	case <-time.After(60 * time.Second):
		stop()
		t.Fatal("stagingd printed no banner within 60 s")
	}
	return benchTarget{}
}

// startInProcess starts the all-in-one in the test process (for CPU
// profiles with go test -cpuprofile).
// startGateway runs the standalone gateway bin on sys's NATS server and
// roots, on a free port, and waits until it is ready.
func startGateway(t *testing.T, bin string, sys benchTarget) benchTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-log-level", "warn")
	cmd.Env = append(os.Environ(),
		"STAGING_NATS_URL="+sys.natsURL, "STAGING_HTTP_ADDR="+addr, "STAGING_OPS_ADDR=127.0.0.1:0",
		"STAGING_SOURCE_ROOT="+filepath.Join(sys.dataDir, "storage"), "STAGING_USER_AREA_ROOT="+filepath.Join(sys.dataDir, "user_area"),
		"STAGING_ALLOWED_METHODS=local_copy,local_symlink,local_hardlink,direct_download")
	stop := startProcess(t, cmd, filepath.Join(sys.dataDir, "gateway.log"))
	base := "http://" + addr
	waitReady(t, base)
	return benchTarget{httpURL: base, natsURL: sys.natsURL, dataDir: sys.dataDir, pid: cmd.Process.Pid, stop: stop}
}

// startProcess starts cmd with its standard error in logPath and returns
// the function that stops it with SIGTERM (and shows the log on failure).
func startProcess(t *testing.T, cmd *exec.Cmd, logPath string) func() {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v; log %s", cmd.Path, err, logPath)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop within 30 s of SIGTERM", cmd.Path)
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("%s log:\n%s", cmd.Path, b)
			}
		}
	}
}

func startInProcess(t *testing.T, dir string) benchTarget {
	t.Helper()
	cfg, err := loadConfig([]string{"-data-dir", dir, "-http-addr", "127.0.0.1:0", "-nats-listen", "127.0.0.1:0", "-log-level", "warn"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sys, err := start(ctx, cfg, io.Discard)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	waitReady(t, sys.httpURL)
	return benchTarget{httpURL: sys.httpURL, natsURL: sys.natsURL, dataDir: dir, heapProfile: os.Getenv("STAGING_BENCH_HEAPPROFILE"), stop: func() {
		cancel()
		if err := sys.wait(); err != nil {
			t.Errorf("stagingd stopped with: %v", err)
		}
	}}
}

func writeHeapProfile(t *testing.T, path string) {
	f, err := os.Create(path)
	if err == nil {
		err = errors.Join(pprof.WriteHeapProfile(f), f.Close())
	}
	if err != nil {
		t.Errorf("heap profile: %v", err)
	}
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, base+"/readyz to answer 200", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, func() string { return "" })
}

// runStep stages files first ... first+n-1 for user with concurrency
// workers (mode seed or sse) and returns the wall time and each request's submit-to-succeeded time.
func runStep(t *testing.T, client *http.Client, tg benchTarget, mode, user string, concurrency, first, n int) (time.Duration, []time.Duration) {
	t.Helper()
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i == n/2 && tg.heapProfile != "" {
					writeHeapProfile(t, tg.heapProfile)
				}
				if i >= n || failed.Load() > 0 {
					return
				}
				src := fmt.Sprintf("bench/%d.dat", first+i)
				dst := fmt.Sprintf("%s/%d.dat", user, first+i)
				t0 := time.Now()
				var err error
				if mode == "seed" {
					err = stageSeed(client, tg.httpURL, user, src, dst)
				} else {
					err = stageSSE(client, tg.httpURL, user, src, dst)
				}
				lat[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { t.Errorf("%s request %d: %v", mode, i, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failed.Load() > 0 {
		t.FailNow()
	}
	return elapsed, lat
}

// stageSeed is the seed's synchronous call: it answers when the copy is
// done.
func stageSeed(client *http.Client, base, user, src, dst string) error {
	body, _ := json.Marshal(map[string]string{"local_path_on_storage": src, "relative_path": dst})
	resp, err := client.Post(base+"/stage_data?method=local_copy&username="+user, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Status != "success" {
		return fmt.Errorf("POST /stage_data = %d %+v (%v), want 200 success", resp.StatusCode, out, err)
	}
	return nil
}

// stageSSE submits asynchronously and follows the request's events until
// the terminal one.
func stageSSE(client *http.Client, base, user, src, dst string) error {
	body, _ := json.Marshal(map[string]string{"method": "local_copy", "username": user, "local_path_on_storage": src, "relative_path": dst})
	resp, err := client.Post(base+"/api/v1/stagings", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	var sub struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted || sub.ID == "" {
		return fmt.Errorf("POST /api/v1/stagings = %d (%v), want 202 with an id", resp.StatusCode, err)
	}
	resp, err = client.Get(base + "/api/v1/stagings/" + sub.ID + "/events")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		detail, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("GET events of %s = %d %s", sub.ID, resp.StatusCode, detail)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct {
			Type contract.EventType `json:"type"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return fmt.Errorf("event of %s: %w", sub.ID, err)
		}
		if ev.Type.Terminal() {
			if ev.Type != contract.EventSucceeded {
				return fmt.Errorf("request %s ended %s: %s", sub.ID, ev.Type, data)
			}
			return nil
		}
	}
	return fmt.Errorf("events of %s ended without a terminal event (%v)", sub.ID, sc.Err())
}

// checkCopies checks that user's area holds n staged 4 KiB files.
func checkCopies(t *testing.T, dataDir, user string, n int) {
	t.Helper()
	dir := filepath.Join(dataDir, "user_area", user, user)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && fi.Size() == benchFileSize && fi.Mode().Perm() == 0o400 {
			got++
		}
	}
	if got != n {
		t.Fatalf("%s holds %d staged 4 KiB files, want %d", dir, got, n)
	}
}

// checkAudit pages through the audit's history of user (GET
// /api/v1/stagings?username=) until it holds n distinct requests, every one
// succeeded.
func checkAudit(t *testing.T, client *http.Client, base, user string, n int) {
	t.Helper()
	var ids map[string]contract.Status
	testenv.Eventually(t, 20*time.Second, fmt.Sprintf("the audit to record %d succeeded requests of %s", n, user), func() bool {
		ids = map[string]contract.Status{}
		cursor := ""
		for {
			resp, err := client.Get(base + "/api/v1/stagings?limit=500&username=" + user + "&cursor=" + cursor)
			if err != nil {
				return false
			}
			var page struct {
				Items      []contract.Record `json:"items"`
				NextCursor string            `json:"next_cursor"`
			}
			err = json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				return false
			}
			for _, r := range page.Items {
				ids[r.ID] = r.Status
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if len(ids) != n {
			return false
		}
		for _, st := range ids {
			if st != contract.StatusSucceeded {
				return false
			}
		}
		return true
	}, func() string {
		counts := map[contract.Status]int{}
		for _, st := range ids {
			counts[st]++
		}
		return jsonText(counts)
	})
}

// procFile reads /proc/<pid>/<name>; nil for pid 0 (in process).
func procFile(t *testing.T, pid int, name string) []byte {
	t.Helper()
	if pid == 0 {
		return nil
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// peakRSS reads VmHWM of pid, in bytes (0 for pid 0).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	data := procFile(t, pid, "status")
	if data == nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// processCPU is the user and system CPU time pid has used so far (0 for
// pid 0).
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	if pid == 0 {
		return 0
	}
	d, err := cputime.Process(pid)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

// benchDownloads issues a direct_download link to a file of size bytes and
// reads it in turn through the gateway and from the stager's own download
// handler, mounted alone on a listener of its own in this process as a
// standalone stager serves it (STAGING_DOWNLOAD_ADDR), three times each.
func benchDownloads(t *testing.T, client *http.Client, tg benchTarget, size int64) []downloadResult {
	t.Helper()
	name := "bench/big.bin"
	writeBigFile(t, filepath.Join(tg.dataDir, "storage", filepath.FromSlash(name)), size)
	link := issueDownload(t, client, tg.httpURL, name)

	var base service.Base
	if err := service.Load(&base, "bench-downloads", []string{"-nats-url", tg.natsURL, "-log-level", "warn"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	rt, err := service.Start(t.Context(), "bench-downloads", base, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(context.Background())
	// The same path as the subprocess: the setting, sendfile by default.
	sendfile, err := strconv.ParseBool(cmp.Or(os.Getenv("STAGING_DOWNLOAD_SENDFILE"), "true"))
	if err != nil {
		t.Fatalf("STAGING_DOWNLOAD_SENDFILE: %v", err)
	}
	h, closeSource, err := stager.NewDownloadHandler(t.Context(), stager.Config{
		SourceRoot:       filepath.Join(tg.dataDir, "storage"),
		DownloadTTL:      time.Hour,
		DownloadSendfile: sendfile,
	}, rt.Deps)
	if err != nil {
		t.Fatal(err)
	}
	defer closeSource()
	direct := httptest.NewServer(h)
	defer direct.Close()

	var out []downloadResult
	for range 3 {
		for _, via := range []struct{ name, base string }{{"gateway", tg.httpURL}, {"stager", direct.URL}} {
			t0 := time.Now()
			resp, err := client.Get(via.base + link)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || n != size {
				t.Fatalf("download via %s = %d, %d bytes (%v), want 200 and %d bytes", via.name, resp.StatusCode, n, err, size)
			}
			el := time.Since(t0)
			t.Logf("download via %s: %d MiB in %s, %.0f MiB/s", via.name, n>>20, el.Round(time.Millisecond), float64(n)/(1<<20)/el.Seconds())
			out = append(out, downloadResult{via: via.name, bytes: n, elapsed: el})
		}
	}
	return out
}

func writeBigFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	for written := int64(0); written < size; {
		n := min(int64(len(chunk)), size-written)
		if _, err := f.Write(chunk[:n]); err != nil {
			t.Fatal(err)
		}
		written += n
	}
}

// issueDownload stages name with direct_download and returns the link's
// path.
func issueDownload(t *testing.T, client *http.Client, base, name string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"method": "direct_download", "username": "bench-dl", "local_path_on_storage": name, "relative_path": "big.bin"})
	resp, err := client.Post(base+"/api/v1/stagings", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var sub struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&sub)
	resp.Body.Close()
	if err != nil || sub.ID == "" {
		t.Fatalf("POST direct_download = %d (%v)", resp.StatusCode, err)
	}
	var link string
	testenv.Eventually(t, 20*time.Second, "the download link of "+sub.ID, func() bool {
		resp, err := client.Get(base + "/api/v1/stagings/" + sub.ID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Status      string `json:"status"`
			DownloadURL string `json:"download_url"`
		}
		if json.NewDecoder(resp.Body).Decode(&st) != nil || st.Status != "succeeded" {
			return false
		}
		link = st.DownloadURL
		return true
	}, func() string { return link })
	if i := strings.Index(link, "/api/v1/downloads/"); i >= 0 {
		link = link[i:]
	}
	return link
}

// benchReport is the Markdown table of the medians over the runs.
func benchReport(p benchParams, all []benchResult, downloads []downloadResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "median of %d run(s); 4 KiB local_copy, submit to succeeded; RSS = peak VmHWM of the whole stagingd process so far (of the bare flow's process on its rows); CPU = that process's user+system time per request\n\n", p.runs)
	b.WriteString("| API | concurrency | requests | requests/s | p50 ms | p99 ms | peak RSS MiB | CPU ms/request |\n|---|---|---|---|---|---|---|---|\n")
	for _, c := range p.levels {
		for _, mode := range p.modes {
			var rate, p50, p99, hwm, gwHWM, cpu []float64
			n := 0
			for _, r := range all {
				if r.mode == mode && r.concurrency == c {
					rate = append(rate, r.perSecond())
					p50 = append(p50, float64(r.p50.Microseconds())/1000)
					p99 = append(p99, float64(r.p99.Microseconds())/1000)
					hwm = append(hwm, float64(r.hwm)/(1<<20))
					gwHWM = append(gwHWM, float64(r.gatewayHWM)/(1<<20))
					cpu = append(cpu, float64(r.cpu.Microseconds())/1000/float64(r.requests))
					n = r.requests
				}
			}
			api := "POST /stage_data (waits)"
			switch mode {
			case "sse":
				api = "POST /api/v1/stagings + SSE"
			case "bare":
				api = "bare flow (baseline), POST /stage_data"
			}
			rss, cpuText := "n/a (in process)", "n/a"
			if !p.inProcess {
				rss = fmt.Sprintf("%.0f", median(hwm))
				if p.gatewayBin != "" {
					rss += fmt.Sprintf(" (gateway process: %.0f)", median(gwHWM))
				}
				cpuText = fmt.Sprintf("%.2f", median(cpu))
			}
			fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %.1f | %.1f | %s | %s |\n", api, c, n, median(rate), median(p50), median(p99), rss, cpuText)
		}
	}
	if slices.Contains(p.modes, "bare") && slices.Contains(p.modes, "seed") {
		b.WriteString("\n| concurrency | all-in-one / bare flow, requests/s (median of the runs' ratios) | CPU ms/request, all-in-one / bare flow |\n|---|---|---|\n")
		for _, c := range p.levels {
			var rate, cpu []float64
			for _, seed := range all {
				if seed.mode != "seed" || seed.concurrency != c {
					continue
				}
				for _, bare := range all {
					if bare.mode == "bare" && bare.run == seed.run && bare.concurrency == c {
						rate = append(rate, seed.perSecond()/bare.perSecond())
						if bare.cpu > 0 {
							cpu = append(cpu, float64(seed.cpu)/float64(seed.requests)/(float64(bare.cpu)/float64(bare.requests)))
						}
					}
				}
			}
			fmt.Fprintf(&b, "| %d | %.2f | %.2f |\n", c, median(rate), median(cpu))
		}
	}
	if len(downloads) > 0 {
		var gw, st []float64
		for _, d := range downloads {
			mibs := float64(d.bytes) / (1 << 20) / d.elapsed.Seconds()
			if d.via == "gateway" {
				gw = append(gw, mibs)
			} else {
				st = append(st, mibs)
			}
		}
		fmt.Fprintf(&b, "\n| download %d MiB | MiB/s (median of %d) |\n|---|---|\n", downloads[0].bytes>>20, len(gw))
		fmt.Fprintf(&b, "| through the gateway | %.0f |\n| stager's own handler | %.0f |\n| ratio | %.2f |\n", median(gw), median(st), median(gw)/median(st))
	}
	return b.String()
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
