package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLargeCopyBench (STAGING_BENCH_LARGE=1, or scripts/bench/latency.sh)
// stages one large file through POST /stage_data on two all-in-ones, one
// with the default durability and one with STAGING_STAGER_SYNC_COPIES=false,
// and compares each with cp of the same file in the same run: cp against
// the one without sync, cp followed by an fsync of the copy against the
// default. Every timed step starts from the same state: the earlier copies
// removed, dirty pages written (sync), the page cache dropped, and the
// source read back, so that it is cached for every step alike. The order of
// the four steps turns by one each round. Settings: STAGING_BENCH_BIN,
// STAGING_BENCH_COPY_MIB (1024), STAGING_BENCH_ROUNDS (5), STAGING_BENCH_OUT.
// Dropping the page cache needs root; without it the test stops.
func TestLargeCopyBench(t *testing.T) {
	if os.Getenv("STAGING_BENCH_LARGE") != "1" {
		t.Skip("benchmark: set STAGING_BENCH_LARGE=1 or run scripts/bench/latency.sh")
	}
	size := int64(envInt(t, "STAGING_BENCH_COPY_MIB", 1024, 1)) << 20
	rounds := envInt(t, "STAGING_BENCH_ROUNDS", 5, 1)
	bin := benchBinary(t)

	durable, fast := t.TempDir(), t.TempDir()
	src := filepath.Join(durable, "storage", "big.bin")
	writeRandomFile(t, src, size)
	// The same inode on both: one source, one page cache.
	if err := os.MkdirAll(filepath.Join(fast, "storage"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(src, filepath.Join(fast, "storage", "big.bin")); err != nil {
		t.Fatal(err)
	}
	withSync := startSubprocess(t, bin, durable)
	defer withSync.stop()
	noSync := startSubprocess(t, bin, fast, "STAGING_STAGER_SYNC_COPIES=false")
	defer noSync.stop()
	cpDir := filepath.Join(durable, "cp")
	if err := os.Mkdir(cpDir, 0o755); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 10 * time.Minute}
	stageTo := func(tg benchTarget) func(string) {
		return func(name string) {
			if err := stageSeed(client, tg.httpURL, "large", "big.bin", name); err != nil {
				t.Fatal(err)
			}
		}
	}
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
	}
	steps := []struct {
		name string
		// outputs is where the step's copies go, removed before each step.
		outputs string
		copy    func(name string)
	}{
		{"cp", cpDir, func(name string) { run("cp", src, filepath.Join(cpDir, name)) }},
		{"cp + fsync", cpDir, func(name string) {
			run("cp", src, filepath.Join(cpDir, name))
			run("sync", filepath.Join(cpDir, name))
		}},
		{"POST /stage_data, STAGING_STAGER_SYNC_COPIES=false", filepath.Join(fast, "user_area", "large"), stageTo(noSync)},
		{"POST /stage_data (default durability)", filepath.Join(durable, "user_area", "large"), stageTo(withSync)},
	}
	times := make([][]time.Duration, len(steps))
	for round := range rounds + 1 {
		for k := range steps {
			i := (k + round) % len(steps)
			s := steps[i]
			resetCopyState(t, src, steps[0].outputs, steps[2].outputs, steps[3].outputs)
			name := fmt.Sprintf("copy-%d-%d.bin", round, i)
			t0 := time.Now()
			s.copy(name)
			d := time.Since(t0)
			if round == 0 {
				continue // warm-up: the first copy after the source was written is slower, whoever makes it
			}
			times[i] = append(times[i], d)
			t.Logf("round %d %s: %s (%.0f MiB/s)", round, s.name, d.Round(time.Millisecond), float64(size>>20)/d.Seconds())
		}
	}
	resetCopyState(t, src, steps[0].outputs, steps[2].outputs, steps[3].outputs)

	var b strings.Builder
	fmt.Fprintf(&b, "%d MiB file, %d rounds after one to warm up, each step from dropped caches with the source read back; load average %s\n\n", size>>20, rounds, loadAverage())
	b.WriteString("| step | median s | MiB/s |\n|---|---|---|\n")
	for i, s := range steps {
		m := percentile(times[i], 50)
		fmt.Fprintf(&b, "| %s | %.3f | %.0f |\n", s.name, m.Seconds(), float64(size>>20)/m.Seconds())
	}
	ratio := func(base, of int) float64 {
		var r []float64
		for k := range times[base] {
			r = append(r, times[base][k].Seconds()/times[of][k].Seconds())
		}
		slices.Sort(r)
		return r[len(r)/2]
	}
	fmt.Fprintf(&b, "\n| comparison (median of the rounds' ratios of speed) | ratio |\n|---|---|\n")
	fmt.Fprintf(&b, "| /stage_data without sync / cp | %.2fx |\n", ratio(0, 2))
	fmt.Fprintf(&b, "| /stage_data default / cp + fsync | %.2fx |\n", ratio(1, 3))
	t.Log("\n" + b.String())
	if out := os.Getenv("STAGING_BENCH_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// resetCopyState brings the machine to the state each timed step starts
// from: no copies left in dirs, dirty pages on disk, the page cache
// dropped, and src read back into it.
func resetCopyState(t *testing.T, src string, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		for _, e := range entries {
			if err := os.Remove(filepath.Join(d, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		t.Fatalf("drop the page cache (needs root): %v", err)
	}
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		t.Fatal(err)
	}
}

func writeRandomFile(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// envInt is the whole number in environment variable name, def when unset;
// one under least fails the test.
func envInt(t *testing.T, name string, def, least int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < least {
		t.Fatalf("%s=%q: want a whole number of at least %d", name, s, least)
	}
	return n
}

// benchBinary is the stagingd a benchmark runs: STAGING_BENCH_BIN, or one
// built here.
func benchBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("STAGING_BENCH_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(t.TempDir(), "stagingd")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build ./cmd/stagingd: %v", err)
	}
	return bin
}
