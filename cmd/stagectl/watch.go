package main

// watch is one command with two faces, bars on a terminal and lines
// elsewhere, over one follow loop; they change together.

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sync/errgroup"
)

// maxStreams bounds the event streams one watch holds open at once; a
// finished request's stream ends at once, so a large job still moves.
const maxStreams = 32

func (a *app) watchCommand() *cobra.Command {
	var jobID string
	cmd := &cobra.Command{
		Use:   "watch ID... | watch --job JOB_ID",
		Short: "Follow requests live with progress bars until they finish",
		Long: `Follow one or more requests (or every request of a job) live, over the
server's event stream, until all of them have finished.

On a terminal each request gets a progress bar with its percentage, bytes,
rate and time left, and several requests get a total line too. Without a
terminal (piped, CI, a notebook) it prints one line per state change
instead; with --json it prints nothing until the end, then the final states
as JSON (an array for IDs, the job for --job).

A dropped connection is resumed where it stopped (Last-Event-ID), so no
event is lost or shown twice. The exit code is the worst outcome: 0 all
succeeded, 1 one failed or was rejected, 3 the server could not be reached.`,
		Example: `  stagectl watch 6c1f2d7e-0b8a-4f4e-9a51-2f0c1e7d9b3a
  stagectl watch --job 0d6a3f9c-2c41-4f0e-b1f7-5b6e2d8f4a11
  stagectl watch ID1 ID2 ID3 | tee staging.log`,
		Args: func(_ *cobra.Command, args []string) error {
			if (jobID == "") == (len(args) == 0) {
				return usagef("give request IDs or --job JOB_ID")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if jobID != "" {
				return a.followJob(cmd.Context(), jobID)
			}
			return a.followAll(cmd.Context(), args, false)
		},
	}
	cmd.Flags().StringVar(&jobID, "job", "", "follow every request of this batch job")
	return cmd
}

// follow follows one request to its end: stage --wait.
func (a *app) follow(ctx context.Context, ids []string) error {
	return a.followAll(ctx, ids, true)
}

// followAll follows requests to their ends and prints their final states:
// one JSON object when single, else an array.
func (a *app) followAll(ctx context.Context, ids []string, single bool) error {
	states, code, err := a.track(ctx, ids, nil)
	if err != nil {
		return err
	}
	if a.json {
		var v any = states
		if single && len(states) == 1 {
			v = states[0]
		}
		if err := writeJSON(a.stdout, v); err != nil {
			return err
		}
	}
	if code != exitOK {
		return exitError{code}
	}
	return nil
}

// followJob follows every request of a job to its end.
func (a *app) followJob(ctx context.Context, jobID string) error {
	j, err := a.c.job(ctx, jobID)
	if err != nil {
		return err
	}
	ids := make([]string, len(j.Items))
	known := map[string]staging{}
	for i, it := range j.Items {
		ids[i] = it.ID
		known[it.ID] = it
	}
	_, code, err := a.track(ctx, ids, known)
	if err != nil {
		return err
	}
	if a.json {
		// The job as the server sees it now: every item finished.
		if j, err = a.c.job(ctx, jobID); err != nil {
			return err
		}
		if err := writeJSON(a.stdout, j); err != nil {
			return err
		}
	}
	if code != exitOK {
		return exitError{code}
	}
	return nil
}

// track follows requests ids (known holds states already read, such as a
// job's) and shows their progress; it returns their final states and the
// worst exit code. A request that cannot be followed (unknown, server
// unreachable) counts with its error's exit code.
func (a *app) track(ctx context.Context, ids []string, known map[string]staging) ([]staging, int, error) {
	v := a.newView(ids)
	states := make([]staging, len(ids))
	codes := make([]int, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxStreams)
	for i, id := range ids {
		if s, ok := known[id]; ok && s.finished() {
			states[i] = s
			v.update(i, s)
			codes[i] = stagingExit(s)
			continue
		}
		g.Go(func() error {
			final, err := a.c.followEvents(gctx, id, func(s staging) { v.update(i, s) })
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				v.fail(i, id, err)
				states[i] = staging{ID: id, Status: "unknown", Error: ptr(errorJSON(err))}
				codes[i] = exitCode(err)
				return nil
			}
			states[i], codes[i] = final, stagingExit(final)
			return nil
		})
	}
	err := g.Wait()
	v.close()
	if err != nil {
		return nil, 0, err
	}
	code := exitOK
	for _, c := range codes {
		code = worse(code, c)
	}
	return states, code, nil
}

func ptr[T any](v T) *T { return &v }

// view shows the progress of the requests being followed. Its methods are
// safe for concurrent use.
type view interface {
	update(i int, s staging)
	// fail says request id could not be followed at all.
	fail(i int, id string, err error)
	// close stops drawing and prints the summary.
	close()
}

func (a *app) newView(ids []string) view {
	switch {
	case a.json:
		return quietView{}
	case a.tty:
		return newBarView(a.stdout, a.stderr, ids, a.line)
	default:
		return &lineView{w: a.stdout, last: make([]string, len(ids)), line: a.line}
	}
}

// quietView shows nothing: --json prints only the final document.
type quietView struct{}

func (quietView) update(int, staging)     {}
func (quietView) fail(int, string, error) {}
func (quietView) close()                  {}

// lineView prints one line per state change, for output that is not a
// terminal.
type lineView struct {
	mu   sync.Mutex
	w    io.Writer
	last []string
	line func(staging) string
}

func (l *lineView) update(i int, s staging) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.Status == l.last[i] {
		return
	}
	l.last[i] = s.Status
	fmt.Fprintln(l.w, l.line(s))
}

func (l *lineView) fail(_ int, id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "%s not followed: %s\n", id, describe(err))
}

func (l *lineView) close() {}

// barView draws a progress bar per request (and a total line for
// several) on stderr, and prints each request's final state on stdout once
// the bars are done. The decorators read a request's state under its own
// lock, and no lock a decorator takes is held while a bar is changed: a bar
// waits for its renderer, which runs the decorators.
type barView struct {
	out   io.Writer
	line  func(staging) string
	p     *mpb.Progress
	bars  []*requestBar
	total *mpb.Bar

	mu     sync.Mutex // serializes changes of the total bar and failed
	failed []string
	// totalKnown: every request still going has reported its size, so the
	// total line's percentage means something.
	totalKnown atomic.Bool
}

// requestBar is one request's bar and what its decorators show.
type requestBar struct {
	bar    *mpb.Bar
	lastAt time.Time // of the last update, for the rate

	mu    sync.Mutex
	state staging
	done  bool
}

func (rb *requestBar) read() (staging, bool) {
	rb.mu.Lock()
	defer rb.mu.Unlock()
	return rb.state, rb.done
}

func newBarView(stdout, stderr io.Writer, ids []string, line func(staging) string) *barView {
	v := &barView{out: stdout, line: line, p: mpb.New(mpb.WithOutput(stderr), mpb.WithRefreshRate(100*time.Millisecond))}
	for _, id := range ids {
		rb := &requestBar{state: staging{ID: id, Status: "waiting"}, lastAt: time.Now()}
		label := id
		if len(label) > 8 {
			label = label[:8]
		}
		rb.bar = v.p.New(0, mpb.BarStyle(),
			mpb.PrependDecorators(
				decor.Name(label, decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string { s, _ := rb.read(); return statusText(s) }, decor.WCSyncSpaceR),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				decor.Any(func(decor.Statistics) string { s, _ := rb.read(); return counters(s) }, decor.WCSyncSpace),
				decor.OnComplete(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30, decor.WCSyncSpace), ""),
				decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncSpace), ""),
			),
		)
		v.bars = append(v.bars, rb)
	}
	if len(ids) > 1 {
		v.total = v.p.New(0, mpb.BarStyle(),
			mpb.PrependDecorators(
				decor.Name("total", decor.WCSyncSpaceR),
				decor.Any(func(decor.Statistics) string { return v.summary() }, decor.WCSyncSpaceR),
			),
			mpb.AppendDecorators(
				decor.Percentage(decor.WCSyncSpace),
				decor.Any(func(st decor.Statistics) string {
					if !v.totalKnown.Load() {
						return size(st.Current) + " / ?"
					}
					return size(st.Current) + " / " + size(st.Total)
				}, decor.WCSyncSpace),
				decor.OnComplete(decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace), ""),
				decor.OnComplete(decor.AverageETA(decor.ET_STYLE_GO, decor.WCSyncSpace), ""),
			),
		)
	}
	return v
}

// counters is a request's bytes for its bar.
func counters(s staging) string {
	switch {
	case s.Progress != nil && s.Status == "running":
		return size(s.Progress.BytesDone) + " / " + size(s.Progress.BytesTotal)
	case s.Status == "succeeded":
		return size(s.Bytes)
	}
	return ""
}

func (v *barView) summary() string {
	done := 0
	for _, rb := range v.bars {
		if _, d := rb.read(); d {
			done++
		}
	}
	return fmt.Sprintf("%d/%d done", done, len(v.bars))
}

// doneBytes is what a finished request adds to the total: a link or a
// symlink moves no bytes but counts as done all the same.
func doneBytes(s staging) int64 {
	n := max(s.Bytes, 1)
	if s.Progress != nil {
		n = max(n, s.Progress.BytesTotal)
	}
	return n
}

func (v *barView) update(i int, s staging) {
	rb := v.bars[i]
	rb.mu.Lock()
	if rb.done {
		rb.mu.Unlock()
		return
	}
	rb.state, rb.done = s, s.finished()
	rb.mu.Unlock()

	now := time.Now()
	switch {
	case s.Status == "succeeded":
		rb.bar.SetTotal(doneBytes(s), true)
	case s.finished():
		rb.bar.Abort(false)
	case s.Progress != nil && s.Progress.BytesTotal > 0:
		rb.bar.SetTotal(s.Progress.BytesTotal, false)
		rb.bar.EwmaSetCurrent(s.Progress.BytesDone, now.Sub(rb.lastAt))
	}
	rb.lastAt = now
	v.updateTotal()
}

// updateTotal sums the bars into the total line.
func (v *barView) updateTotal() {
	if v.total == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var total, current int64
	all, failed, known := true, false, true
	for _, rb := range v.bars {
		s, done := rb.read()
		switch {
		case s.Status == "succeeded":
			total += doneBytes(s)
			current += doneBytes(s)
		case s.Progress != nil:
			total += s.Progress.BytesTotal
			current += s.Progress.BytesDone
		case !done:
			known = false
		}
		all = all && done
		failed = failed || (done && s.Status != "succeeded")
	}
	v.totalKnown.Store(known)
	if !known {
		// Unknown yet: a percentage of the sizes known would mislead.
		total = 0
	}
	switch {
	case all && !failed:
		v.total.SetTotal(total, true)
	case all:
		v.total.SetTotal(total, false)
		v.total.SetCurrent(current)
		v.total.Abort(false)
	default:
		v.total.SetTotal(total, false)
		v.total.SetCurrent(current)
	}
}

func (v *barView) fail(i int, id string, err error) {
	rb := v.bars[i]
	rb.mu.Lock()
	rb.state, rb.done = staging{ID: id, Status: "unknown", Error: ptr(errorJSON(err))}, true
	rb.mu.Unlock()
	rb.bar.Abort(false)
	v.mu.Lock()
	v.failed = append(v.failed, fmt.Sprintf("%s not followed: %s", id, describe(err)))
	v.mu.Unlock()
	v.updateTotal()
}

func (v *barView) close() {
	for _, rb := range v.bars {
		if _, done := rb.read(); !done {
			rb.bar.Abort(false) // interrupted
		}
	}
	if v.total != nil && !v.total.Completed() {
		v.total.Abort(false)
	}
	v.p.Wait()
	for _, rb := range v.bars {
		if s, _ := rb.read(); s.Status != "unknown" && s.finished() {
			fmt.Fprintln(v.out, v.line(s))
		}
	}
	for _, f := range v.failed {
		fmt.Fprintln(v.out, f)
	}
}
