package stage_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/cputime"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

const benchSize = 256 << 20

func benchSource(b *testing.B) (string, string) {
	b.Helper()
	dir := b.TempDir()
	src := filepath.Join(dir, "storage")
	users := filepath.Join(dir, "users")
	for _, d := range []string{src, users} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(src, "big.bin"))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for range benchSize / len(buf) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return src, users
}

// benchStager opens a stager on the storage src and the user area users,
// closed when b ends.
func benchStager(b *testing.B, src, users string, noSync bool) *stage.Stager {
	b.Helper()
	r, err := storage.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	u, err := os.OpenRoot(users)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { u.Close() })
	return &stage.Stager{Source: r, Users: u, NoSync: noSync, Tracer: noop.NewTracerProvider().Tracer("bench")}
}

// BenchmarkCopyFile compares the stager's copy of a 256 MiB file (os.Root,
// temporary name, fsync, rename) with io.Copy between two files, with and
// without an fsync of the copy.
func BenchmarkCopyFile(b *testing.B) {
	src, users := benchSource(b)
	b.Run("stager", func(b *testing.B) {
		s := benchStager(b, src, users, false)
		b.SetBytes(benchSize)
		i := 0
		for b.Loop() {
			i++
			if _, err := s.Copy(context.Background(), cmd(fmt.Sprint("req", i), "big.bin", fmt.Sprintf("copy-%d", i)), nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := os.Remove(filepath.Join(users, "alice", fmt.Sprintf("copy-%d", i))); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	for _, fsync := range []bool{true, false} {
		b.Run(map[bool]string{true: "io.Copy+fsync", false: "io.Copy"}[fsync], func(b *testing.B) { plainCopy(b, src, users, fsync) })
	}
}

// plainCopy is the baseline of BenchmarkCopyFile: io.Copy between two
// files (copy_file_range), then an fsync of the copy if asked.
func plainCopy(b *testing.B, src, users string, fsync bool) {
	b.SetBytes(benchSize)
	dst := filepath.Join(users, "plain")
	for b.Loop() {
		in, err := os.Open(filepath.Join(src, "big.bin"))
		if err != nil {
			b.Fatal(err)
		}
		out, err := os.Create(dst)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			b.Fatal(err)
		}
		if fsync {
			if err := out.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		in.Close()
		if err := out.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.Remove(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkCopyTree compares the stager's copy of a tree of 10,000 files
// of 4 KiB (os.Root, temporary name, syncfs, rename; stager-nosync without
// the syncfs) with cp -r, and with cp -r followed by a syncfs, on the same
// tree in the same run; cpu-us/file is the stager's CPU time per file (less
// disturbed by other load on the machine than files/s). Every copy goes to
// a fresh name and nothing is removed until the end: on ext4 a tree made
// right after another was removed is much slower to make.
func BenchmarkCopyTree(b *testing.B) {
	const dirs, files = 100, 10_000
	dir := b.TempDir()
	src, users := filepath.Join(dir, "storage"), filepath.Join(dir, "users")
	buf := make([]byte, 4<<10)
	for d := range dirs {
		sub := filepath.Join(src, "tree", fmt.Sprintf("d%03d", d))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range files / dirs {
			buf[0], buf[1] = byte(d), byte(f)
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%03d.dat", f)), buf, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	dst := filepath.Join(users, "alice")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { makeRemovable(b, users) })
	run := func(name string, args ...string) {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("sync")
	n := 0
	timed := func(b *testing.B, copy func(name string)) {
		began, cpu := time.Now(), cputime.Own(b)
		for b.Loop() {
			n++
			copy(fmt.Sprintf("tree-%d", n))
		}
		b.ReportMetric(float64(files*b.N)/time.Since(began).Seconds(), "files/s")
		// The CPU time of this process: the stager's, not cp's.
		b.ReportMetric(float64(cputime.Own(b)-cpu)/float64(time.Microsecond)/float64(files*b.N), "cpu-us/file")
	}
	for _, noSync := range []bool{false, true} {
		b.Run(map[bool]string{false: "stager", true: "stager-nosync"}[noSync], func(b *testing.B) {
			s := benchStager(b, src, users, noSync)
			progress := stage.ProgressFunc(func(contract.Progress) {})
			timed(b, func(name string) {
				if _, err := s.Copy(context.Background(), cmd("req-"+name, "tree", name), progress); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
	b.Run("cp-r", func(b *testing.B) {
		timed(b, func(name string) { run("cp", "-r", filepath.Join(src, "tree"), filepath.Join(dst, name)) })
	})
	b.Run("cp-r+syncfs", func(b *testing.B) {
		timed(b, func(name string) {
			run("cp", "-r", filepath.Join(src, "tree"), filepath.Join(dst, name))
			run("sync", "-f", filepath.Join(dst, name))
		})
	})
}

// BenchmarkCopySmallFile measures the per-request cost of a single-file
// local_copy of 4 KiB into a subdirectory of the user's area: what bounds
// the gateway's throughput for small requests. Each copy goes to a new
// name; cpu-us/op is the process's CPU time (user and system) per copy.
// Run it under `strace -f -c` to count the system calls per request.
func BenchmarkCopySmallFile(b *testing.B) {
	dir := b.TempDir()
	src, users := filepath.Join(dir, "storage"), filepath.Join(dir, "users")
	for _, d := range []string{src, users} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "small.bin"), make([]byte, 4<<10), 0o644); err != nil {
		b.Fatal(err)
	}
	s := benchStager(b, src, users, false)
	b.SetBytes(4 << 10)
	i := 0
	progress := stage.ProgressFunc(func(contract.Progress) {})
	began := cputime.Own(b)
	for b.Loop() {
		i++
		if _, err := s.Copy(context.Background(), cmd(fmt.Sprint("req", i), "small.bin", fmt.Sprintf("in/small-%d", i)), progress); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cputime.Own(b)-began)/float64(time.Microsecond)/float64(b.N), "cpu-us/op")
}
