package stage_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"

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

// BenchmarkCopyFile compares the stager's copy of a 256 MiB file (os.Root,
// temporary name, fsync, rename) with a bare io.Copy between two files.
func BenchmarkCopyFile(b *testing.B) {
	src, users := benchSource(b)
	b.Run("stager", func(b *testing.B) {
		r, err := storage.Open(src)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		u, err := os.OpenRoot(users)
		if err != nil {
			b.Fatal(err)
		}
		defer u.Close()
		s := &stage.Stager{Source: r, Users: u, Tracer: noop.NewTracerProvider().Tracer("bench")}
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
	b.Run("io.Copy", func(b *testing.B) {
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
			if err := out.Sync(); err != nil {
				b.Fatal(err)
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
	})
}
