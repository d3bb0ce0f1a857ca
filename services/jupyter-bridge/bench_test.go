package jupyterbridge_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubclient"
	"github.com/skao/skao-staging/services/jupyter-bridge/internal/hubtest"
)

const (
	benchSize  = 200 << 20
	benchChunk = hubclient.DefaultChunkSize
)

// BenchmarkUpload200MiB uploads a 200 MiB binary file into a running
// Jupyter server, end to end through the bridge (jupyter_copy published on
// an embedded NATS server until its succeeded event), and, as the baseline
// right beside it, with curl making the same chunked PUTs
// (scripts/jupyterhub-test/curl-upload.sh) against the same hub and user,
// which of the two goes first alternating from one run to the next. Every
// upload is checked by the sha256 of what lands on disk.
//
// The timed part (ns/op, MB/s, B/op) is the bridge's upload; curl-MiB/s is
// the baseline's and bridge/curl the ratio of the two throughputs. The
// bridge's memory is sampled while it uploads: peak-heap-chunks is the peak
// growth of the live heap in chunks (the target: under 3), peak-rss-MiB
// the peak growth of the process's resident set.
// scripts/jupyterhub-test/bench.sh runs it several times and prints the
// medians.
//
// It runs only with STAGING_BENCH_JUPYTER=1 (bench.sh sets it): alone, not
// beside other packages' benchmarks, which would skew the comparison.
func BenchmarkUpload200MiB(b *testing.B) {
	b.StopTimer()
	if os.Getenv("STAGING_BENCH_JUPYTER") != "1" {
		b.Skip("SKIP: uploads 400 MiB per run; run scripts/jupyterhub-test/bench.sh or set STAGING_BENCH_JUPYTER=1")
	}
	hub := hubtest.Get(b)
	curl, err := filepath.Abs("../../scripts/jupyterhub-test/curl-upload.sh")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skipf("SKIP: no curl for the baseline: %v", err)
	}
	src := b.TempDir()
	file := filepath.Join(src, "big.bin")
	want := writeRandom(b, file, benchSize)

	user := hub.NewUser(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := hub.Client(b, 0).EnsureRunning(ctx, user, time.Minute, nil); err != nil {
		b.Fatal(err)
	}
	cfg := testConfig(hub.URL, hub.Token, src)
	cfg.ChunkSize = benchChunk
	br := startBridge(b, cfg)

	// check verifies and removes an uploaded file.
	check := func(target string) {
		b.Helper()
		p := hub.UserPath(user, target)
		if got := hubtest.FileSHA256(b, p); got != want {
			b.Fatalf("%s: sha256 %x, want %x", target, got, want)
		}
		if err := os.Remove(p); err != nil {
			b.Fatal(err)
		}
	}
	bridge := func() (time.Duration, uint64, uint64) {
		target := fmt.Sprintf("bridge-%d.bin", rand.Uint32())
		runtime.GC()
		stop := sampleMemory()
		began := time.Now()
		b.StartTimer()
		events := br.stage(b, command(user, "big.bin", target, ""))
		b.StopTimer()
		d := time.Since(began)
		heap, rss := stop()
		if last := events[len(events)-1]; last.Type != contract.EventSucceeded || last.Bytes != benchSize {
			b.Fatalf("last event: %+v", last)
		}
		check(target)
		return d, heap, rss
	}
	baseline := func() time.Duration {
		target := fmt.Sprintf("curl-%d.bin", rand.Uint32())
		cmd := exec.Command("bash", curl, file, target)
		cmd.Env = append(os.Environ(), "JUPYTERHUB_URL="+hub.URL, "JUPYTERHUB_API_TOKEN="+hub.Token,
			"JUPYTER_USER="+user, "CHUNK_BYTES="+strconv.Itoa(benchChunk))
		began := time.Now()
		out, err := cmd.CombinedOutput()
		d := time.Since(began)
		if err != nil {
			b.Fatalf("%s: %v\n%s", curl, err, out)
		}
		check(target)
		return d
	}

	b.SetBytes(benchSize)
	var dBridge, dCurl time.Duration
	var peakHeap, peakRSS uint64
	for range b.N {
		curlFirst := benchRuns.Add(1)%2 == 0
		if curlFirst {
			dCurl += baseline()
		}
		d, heap, rss := bridge()
		dBridge, peakHeap, peakRSS = dBridge+d, max(peakHeap, heap), max(peakRSS, rss)
		if !curlFirst {
			dCurl += baseline()
		}
	}
	mibps := func(d time.Duration) float64 { return float64(b.N) * benchSize / (1 << 20) / d.Seconds() }
	b.ReportMetric(mibps(dBridge), "MiB/s")
	b.ReportMetric(mibps(dCurl), "curl-MiB/s")
	b.ReportMetric(dCurl.Seconds()/dBridge.Seconds(), "bridge/curl")
	b.ReportMetric(float64(peakHeap)/benchChunk, "peak-heap-chunks")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-rss-MiB")
}

// benchRuns counts the runs of BenchmarkUpload200MiB in this process, so
// that which upload goes first alternates.
var benchRuns atomic.Int64

// writeRandom writes size random bytes to p and returns their sha256.
func writeRandom(t testing.TB, p string, size int64) [32]byte {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(f, h), 1<<20)
	r := rand.NewChaCha8([32]byte{1, 2, 3})
	if _, err := io.CopyN(w, r, size); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// sampleMemory samples the live heap and the resident set every 5 ms until
// the returned function is called, which returns their peak growth over
// the first sample.
func sampleMemory() func() (heap, rss uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() (uint64, uint64) {
		metrics.Read(s)
		return s[0].Value.Uint64(), residentBytes()
	}
	baseHeap, baseRSS := read()
	var peakHeap, peakRSS uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			h, r := read()
			peakHeap, peakRSS = max(peakHeap, h), max(peakRSS, r)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() (uint64, uint64) {
		close(done)
		wg.Wait()
		return peakHeap - min(peakHeap, baseHeap), peakRSS - min(peakRSS, baseRSS)
	}
}

// residentBytes is the process's resident set size (0 where /proc is
// missing).
func residentBytes() uint64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
