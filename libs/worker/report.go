package worker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// Reporter publishes the progress and resolved events of one request. It is safe for
// use by several goroutines, and a nil Reporter reports nothing.
type Reporter struct {
	w       *Worker
	ctx     context.Context
	cmd     contract.Command
	attempt int

	mu     sync.Mutex
	last   time.Time         // when progress was last published
	latest contract.Progress // the last progress reported
}

func (w *Worker) reporter(ctx context.Context, cmd contract.Command, attempt int) *Reporter {
	return &Reporter{w: w, ctx: ctx, cmd: cmd, attempt: attempt}
}

// Progress publishes p at most once per ProgressEvery; the report of a
// finished request (everything done) is always published.
func (r *Reporter) Progress(p contract.Progress) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latest = p
	done := p.BytesDone == p.BytesTotal && p.FilesDone == p.FilesTotal
	if time.Since(r.last) < r.w.o.ProgressEvery && !done {
		return
	}
	r.last = time.Now()
	ev := r.w.event(r.ctx, r.cmd, contract.EventProgress, r.attempt)
	ev.Progress = &p
	r.publish(ev)
}

// Message publishes a progress event telling a person about a step (a
// server starting, say). Messages are rare, so they are not spaced. The
// event repeats the last progress reported (zero before any), since the
// contract requires every progress event to carry one.
func (r *Reporter) Message(msg string) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.w.event(r.ctx, r.cmd, contract.EventProgress, r.attempt)
	ev.Message = msg
	p := r.latest
	ev.Progress = &p
	r.publish(ev)
}

// Resolved publishes the files the request's DID was resolved into, in
// resolved events of at most contract.MaxResolvedPaths paths each, in
// order: paths are relative to the storage root, in the order Rucio listed
// them, and bytes is their total size. It is called once per attempt,
// after resolving and before anything is copied; unlike progress, the
// resolution is part of the request's record, so an event that cannot be
// published fails the attempt (retried).
func (r *Reporter) Resolved(paths []string, bytes int64) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, part := range contract.ResolvedParts(paths, bytes) {
		ev := r.w.event(r.ctx, r.cmd, contract.EventResolved, r.attempt)
		ev.Resolved = &part
		ev.Message = fmt.Sprintf("%s resolved into %s (%s); part %d of %d", r.cmd.DID, count(part.Files, "file"), count(part.Bytes, "byte"), part.Part, part.Parts)
		if err := bus.PublishEvent(r.ctx, r.w.o.JS, ev); err != nil {
			return fmt.Errorf("publish part %d of %d of the resolution of %s: %w", part.Part, part.Parts, r.cmd.DID, err)
		}
	}
	return nil
}

func count(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// publish is called with mu held, so events leave in the order reported.
func (r *Reporter) publish(ev contract.Event) {
	if err := bus.PublishEvent(r.ctx, r.w.o.JS, ev); err != nil {
		// Progress is informative only; the outcome is what counts.
		r.w.o.Log.WarnContext(r.ctx, "progress_publish_failed", "request_id", r.cmd.ID, "error", err)
	}
}
