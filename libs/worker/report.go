package worker

import (
	"context"
	"sync"
	"time"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// Reporter publishes the progress events of one request. It is safe for
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

// publish is called with mu held, so events leave in the order reported.
func (r *Reporter) publish(ev contract.Event) {
	if err := bus.PublishEvent(r.ctx, r.w.o.JS, ev); err != nil {
		// Progress is informative only; the outcome is what counts.
		r.w.o.Log.WarnContext(r.ctx, "progress_publish_failed", "request_id", r.cmd.ID, "error", err)
	}
}
