package stage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/cputime"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/rucio/ruciotest"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

// BenchmarkDID10k resolves and stages a dataset of 10,000 files of 4 KiB
// (names d000/f000.dat … in 100 directories, as BenchmarkCopyTree's tree)
// against the fake Rucio, in the same process: "resolve" only lists the
// files (Client.Files, streamed NDJSON), "local_copy" stages the dataset
// (resolution, a stat of each file, the copies with their adler32 checked).
func BenchmarkDID10k(b *testing.B) {
	const dirs, files = 100, 10_000
	dir := b.TempDir()
	src, users := filepath.Join(dir, "storage"), filepath.Join(dir, "users")
	for _, d := range []string{src, users} {
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
	}
	fake := ruciotest.New(b, "SITE_POSIX", src+"/")
	buf := make([]byte, 4<<10)
	var names []string
	for d := range dirs {
		for f := range files / dirs {
			buf[0], buf[1] = byte(d), byte(f)
			name := fmt.Sprintf("d%03d/f%03d.dat", d, f)
			p := filepath.Join(src, ruciotest.Path("bench", name))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(p, buf, 0o644); err != nil {
				b.Fatal(err)
			}
			fake.AddFile("bench", name, buf)
			names = append(names, "bench:"+name)
		}
	}
	fake.AddCollection("DATASET", "bench", "ds10k", names...)
	client, err := rucio.New(rucio.Config{URL: fake.URL, Account: ruciotest.Account, Username: ruciotest.Username,
		Password: ruciotest.Password, RSE: fake.RSE, PFNPrefix: fake.PFNPrefix(), Timeout: time.Minute, Retries: 1}, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(users, "alice"), 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { makeRemovable(b, users) })

	timed := func(b *testing.B, run func(i int)) {
		b.ReportAllocs()
		began, cpu, i := time.Now(), cputime.Own(b), 0
		for b.Loop() {
			i++
			run(i)
		}
		b.ReportMetric(float64(files*b.N)/time.Since(began).Seconds(), "files/s")
		// The fake Rucio runs in this process: its CPU time is counted.
		b.ReportMetric(float64(cputime.Own(b)-cpu)/float64(time.Microsecond)/float64(files*b.N), "cpu-us/file")
	}
	b.Run("resolve", func(b *testing.B) {
		timed(b, func(int) {
			n := 0
			if err := client.Files(context.Background(), "bench:ds10k", func(rucio.File) error { n++; return nil }); err != nil || n != files {
				b.Fatalf("%d files, %v", n, err)
			}
		})
	})
	b.Run("local_copy", func(b *testing.B) {
		s := benchStager(b, src, users, false)
		s.Rucio = client
		progress := stage.ProgressFunc(func(contract.Progress) {})
		timed(b, func(i int) {
			c := cmd(fmt.Sprint("req-did-", i), "", fmt.Sprint("ds-", i))
			c.LocalPathOnStorage, c.DID = "", "bench:ds10k"
			r, err := s.Copy(context.Background(), c, progress)
			if err != nil || r.Files != files {
				b.Fatalf("%+v, %v", r, err)
			}
		})
	})
}
