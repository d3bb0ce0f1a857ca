package stage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/storage"
)

// Copy copies the source file or directory tree to the target and leaves
// the result read-only: files 0400, directories 0500.
func (s *Stager) Copy(ctx context.Context, cmd contract.Command, report Report) (Result, error) {
	p, err := s.planSource(ctx, cmd, report)
	if err != nil {
		return Result{}, err
	}
	return s.stagePlan(ctx, cmd, p, report)
}

// stagePlan makes what p plans at cmd's target: copies, or for a DID's
// tree with a linking method, links (linkDID).
func (s *Stager) stagePlan(ctx context.Context, cmd contract.Command, p *plan, report Report) (Result, error) {
	_, span := s.Tracer.Start(ctx, "stager.check")
	t, err := s.openTarget(cmd)
	span.End()
	if err != nil {
		return Result{}, err
	}
	defer t.close()
	if r, done, err := t.settle(p.kind()); done {
		if err == nil && !p.tree {
			r, err = t.checkSize(cmd, r, p.size)
		}
		// The copy is not made: nothing finds a leftover of an earlier
		// attempt in its way, so it is looked for here.
		if rerr := removeTemp(t.user, t.tmpRel); rerr != nil {
			return Result{}, targetError(t.shown, rerr)
		}
		return r, err
	}
	if p.link == "" {
		if err := t.checkSpace(p); err != nil {
			return Result{}, err
		}
	}
	if err := s.Quotas.Check(s.Users, cmd.Username, p.bytes); err != nil {
		return Result{}, err
	}
	if p.tree || p.size > trackAbove {
		if err := s.track(cmd.ID, t); err != nil {
			return Result{}, err
		}
		defer s.untrack(t)
	}

	cctx, span := s.Tracer.Start(ctx, "stager.copy")
	var progress ProgressFunc
	if report != nil && (p.tree || p.size > chunk) {
		// Not for one chunk, one call: its progress could only say
		// nothing or all of it. No meter, no goroutine and ticker to
		// start and stop for each small request.
		progress = report.Progress
	}
	m := startMeter(progress, s.progressEvery(), contract.Progress{BytesTotal: p.bytes, FilesTotal: p.files})
	sum, err := s.copyPlan(cctx, t, p, m, cmd.ExpectedAdler32 != "")
	m.stop()
	if err != nil {
		span.RecordError(err)
		span.End()
		return Result{}, errors.Join(err, removeTemp(t.user, t.tmpRel))
	}
	span.End()
	if cmd.ExpectedAdler32 != "" && sum != cmd.ExpectedAdler32 {
		return Result{}, errors.Join(
			contract.Errorf(contract.CodeChecksumMismatch, "the copy of %s has adler32 %s, expected %s", cmd.LocalPathOnStorage, sum, cmd.ExpectedAdler32),
			removeTemp(t.user, t.tmpRel))
	}

	_, span = s.Tracer.Start(ctx, "stager.finalize")
	defer span.End()
	if r, done, err := t.finalize(p.kind(), s.syncer()); done {
		return r, err
	}
	return Result{
		Outcome: contract.OutcomeStaged,
		Bytes:   p.bytes,
		Files:   p.files,
		Adler32: sum,
		Message: fmt.Sprintf("%s %s (%s)%s to %s", p.verb(), plural(p.files, "file"), plural(p.bytes, "byte"), didMessage(cmd), t.shown),
	}, nil
}

// planSource plans the copy of cmd's source: the path on the storage, or
// the files of the DID (did.go), reported to report.
func (s *Stager) planSource(ctx context.Context, cmd contract.Command, report Report) (*plan, error) {
	if cmd.DID != "" {
		return s.planDID(ctx, cmd, report)
	}
	rel, fi, err := s.resolve(ctx, cmd)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() && cmd.ExpectedAdler32 != "" {
		// Refused before anything is copied: a tree has no one checksum
		// to compare with.
		return nil, contract.Errorf(contract.CodeMalformed, "expected_adler32 applies to a single file, and %s is a directory", cmd.LocalPathOnStorage)
	}
	_, span := s.Tracer.Start(ctx, "stager.plan")
	defer span.End()
	return s.planCopy(rel, fi)
}

// copyPlan writes the result under the target's temporary name and returns
// the adler32 of a single file when sum is set.
func (s *Stager) copyPlan(ctx context.Context, t *target, p *plan, m *meter, sum bool) (string, error) {
	if !p.tree {
		var adler string
		err := t.withTemp(func() (err error) {
			adler, err = s.copyFrom(ctx, t, copyJob{src: p.top, dir: t.fd, dst: path.Base(t.tmpRel), sum: sum, sync: !s.NoSync, cat: p.cat}, m)
			return err
		})
		return adler, err
	}
	err := t.withTemp(func() error {
		if err := t.user.Mkdir(t.tmpRel, 0o700); err != nil {
			return targetError(t.shown, err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, d := range p.dirs[1:] {
		if err := t.user.Mkdir(path.Join(t.tmpRel, d.sub), 0o700); err != nil {
			return "", targetError(t.shown, err)
		}
	}
	if err := s.copyTree(ctx, t, p, m); err != nil {
		return "", err
	}
	// Read-only from the bottom up: a directory is filled before it loses
	// its write permission. Renaming it later needs write permission on its
	// parent only.
	for i := len(p.dirs) - 1; i >= 0; i-- {
		d := path.Join(t.tmpRel, p.dirs[i].sub)
		if t.own {
			if err := t.user.Lchown(d, t.owner.UID, t.owner.GID); err != nil {
				return "", targetError(t.shown, err)
			}
		}
		if err := t.user.Chmod(d, readOnlyDir); err != nil {
			return "", targetError(t.shown, err)
		}
	}
	if s.NoSync {
		return "", nil
	}
	// One syncfs (shared with the other copies waiting) instead of an
	// fsync per file: as durable before the rename, much faster for many
	// small files.
	if err := s.flush.sync(t.sync.with(-1)); err != nil {
		return "", targetError(t.shown, err)
	}
	return "", nil
}

// unitFiles bounds the files of a directory one worker copies in one go:
// each worker opens the directories it copies in, on both sides, once per
// unit, and a large directory is still shared between workers.
const unitFiles = 256

// copyTree copies the files of a tree into its directories, already made
// under the temporary name, with a bounded pool of workers; the first
// error stops the rest. A worker takes a unit of files of one directory;
// workers on different directories do not contend for a directory's lock
// when they create files.
func (s *Stager) copyTree(ctx context.Context, t *target, p *plan, m *meter) error {
	// A DID's files are each found by their own path (copyUnit).
	from := s.Source.OS()
	if !p.catalogue {
		var err error
		if from, err = s.Source.OS().OpenRoot(p.top); err != nil {
			return storage.SourceError(p.top, err)
		}
		defer from.Close()
	}
	to, err := t.user.OpenRoot(t.tmpRel)
	if err != nil {
		return targetError(t.shown, err)
	}
	defer to.Close()

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.workers())
feed:
	for _, d := range p.dirs {
		for files := range slices.Chunk(d.files, unitFiles) {
			if gctx.Err() != nil {
				break feed
			}
			u := dir{sub: d.sub, files: files}
			g.Go(func() error { return s.copyUnit(gctx, t, from, to, p, u, m) })
		}
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return ctx.Err()
}

// copyUnit copies files of directory u of the tree, opening the directory
// once on each side: each file is then opened by its name alone, with a
// raw openat relative to the directory, rather than by a path resolved
// again component by component.
func (s *Stager) copyUnit(ctx context.Context, t *target, srcTop, dstTop *os.Root, p *plan, u dir, m *meter) error {
	to, err := openDir(dstTop, u.sub)
	if err != nil {
		return targetError(t.shown, err)
	}
	defer to.Close()
	if u.files[0].src != "" {
		// A DID's files: each by its own path, from the storage's
		// root, through os.Root.
		for _, f := range u.files {
			var err error
			if p.link != "" {
				err = s.linkFile(t, p.link, f, int(to.Fd()), m)
			} else {
				_, err = s.copyFrom(ctx, t, copyJob{src: f.src, dir: int(to.Fd()), dst: f.name, cat: f.cat}, m)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	src := path.Join(p.top, u.sub)
	from, err := openDir(srcTop, u.sub)
	if err != nil {
		return storage.SourceError(src, err)
	}
	defer from.Close()
	for _, f := range u.files {
		j := copyJob{src: path.Join(src, f.name), dir: int(to.Fd()), dst: f.name}
		if f.link {
			// Followed from the storage's root, through os.Root: it
			// may lead out of its directory, never out of the storage.
			_, err = s.copyFrom(ctx, t, j, m)
		} else {
			_, err = s.copyAt(ctx, t, int(from.Fd()), f.name, j, m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// openDir opens directory name of r. O_NONBLOCK spares the fcntl calls
// os.File makes to try a descriptor on the poller (and makes Fd free of
// them); it changes nothing for a directory.
func openDir(r *os.Root, name string) (*os.File, error) {
	return r.OpenFile(name, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NONBLOCK, 0)
}
