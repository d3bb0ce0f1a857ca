// Package stage carries out the stager's filesystem methods: copy a file or
// a tree into a user's area, link to the source with a symbolic or a hard
// link, and check a source before a download link is issued for it.
//
// Every path goes through os.Root, on the storage (libs/storage) and on the
// user area, so no request can reach outside either. Results appear
// atomically: they are built under a temporary name in the destination
// directory and renamed into place, so a crash at any moment leaves no
// partial result, and the leftovers are removed when the request is tried
// again.
package stage

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/libs/worker"
	"github.com/skao/skao-staging/services/stager/internal/ownership"
	"github.com/skao/skao-staging/services/stager/internal/quota"
)

// Stager stages requests from one storage into one user area.
type Stager struct {
	Source *storage.Root
	// Users is the user area: each user's items go below <Users>/<username>.
	Users *os.Root
	// Workers bounds the files of a tree copied at once (default 4).
	Workers int
	// Owners gives staged data to its user (nil: it keeps the stager's
	// owner).
	Owners *ownership.Owners
	// Quotas bound what each user holds in the user area (nil: no bound).
	Quotas *quota.Quotas
	// ProgressEvery is the interval of progress reports (default 1 s).
	ProgressEvery time.Duration
	// Rucio resolves the DID a request names (nil: a request by DID is
	// refused).
	Rucio Catalogue
	// Tracer makes the resolve, check, copy and finalize spans.
	Tracer trace.Tracer
	// NoSync leaves a copy's data and its rename to the kernel's writeback
	// instead of waiting for them to reach the disk. A process that dies
	// loses nothing either way; a machine that crashes soon after a copy
	// may come back with the copy under its final name but its data
	// missing, which a retry of the request then finds already present.
	NoSync bool

	// flush makes copies and renames durable, many at a time (flush.go).
	flush flusher

	// afterChunk, when set (by tests), runs after each chunk of a file is
	// copied: a test changes the source there, mid-copy.
	afterChunk func(src string)
}

// Result is what a successful staging did: the worker's own type, so the
// stager hands it on as it is.
type Result = worker.Result

// Report receives what a staging tells as it goes: the worker's
// *worker.Reporter. A nil Report hears nothing.
type Report interface {
	// Progress receives the progress of a long copy, at most about once
	// a second, from a single goroutine.
	Progress(contract.Progress)
	// Resolved receives the files a DID was resolved into (paths relative
	// to the storage root, in the order Rucio listed them, and their total
	// size), once, before anything is written; its error fails the
	// staging.
	Resolved(paths []string, bytes int64) error
}

// ProgressFunc is a Report that hears the progress only.
type ProgressFunc func(contract.Progress)

// Progress calls f, when set.
func (f ProgressFunc) Progress(p contract.Progress) {
	if f != nil {
		f(p)
	}
}

// Resolved hears nothing.
func (ProgressFunc) Resolved([]string, int64) error { return nil }

// Modes of the parent directories the stager creates in a user area, and of
// the copied data (read-only: the staged copy is a snapshot of the source).
const (
	dirMode      = 0o755
	readOnlyFile = 0o400
	readOnlyDir  = 0o500
)

// resolve finds the source of cmd on the storage.
func (s *Stager) resolve(ctx context.Context, cmd contract.Command) (string, fs.FileInfo, error) {
	_, span := s.Tracer.Start(ctx, "stager.resolve")
	defer span.End()
	rel, fi, err := s.Source.Stat(cmd.LocalPathOnStorage)
	if err != nil {
		span.RecordError(err)
		return "", nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return "", nil, contract.Errorf(contract.CodeInvalidPath, "%s is neither a file nor a directory", cmd.LocalPathOnStorage)
	}
	return rel, fi, nil
}

// Check validates the source of a direct download and returns its path
// relative to the storage.
func (s *Stager) Check(ctx context.Context, cmd contract.Command) (string, fs.FileInfo, error) {
	if err := noChecksum(cmd); err != nil {
		return "", nil, err
	}
	if err := contract.ValidateUsername(cmd.Username); err != nil {
		return "", nil, err
	}
	return s.resolve(ctx, cmd)
}

// noChecksum refuses an expected_adler32 for a method that copies nothing
// it could check (a link, a download link): a checksum asked for is never
// silently ignored.
func noChecksum(cmd contract.Command) error {
	if cmd.ExpectedAdler32 == "" {
		return nil
	}
	return contract.Errorf(contract.CodeMalformed, "expected_adler32 is checked by local_copy only: %s copies nothing to check", cmd.Method)
}

func (s *Stager) progressEvery() time.Duration {
	if s.ProgressEvery > 0 {
		return s.ProgressEvery
	}
	return time.Second
}

func (s *Stager) workers() int {
	if s.Workers > 0 {
		return s.Workers
	}
	return 4
}

// syncer is the flusher that makes renames durable, nil when copies are
// left to the kernel's writeback.
func (s *Stager) syncer() *flusher {
	if s.NoSync {
		return nil
	}
	return &s.flush
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
