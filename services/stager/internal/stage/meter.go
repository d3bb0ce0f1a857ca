package stage

import (
	"sync/atomic"
	"time"

	"github.com/skao/skao-staging/libs/contract"
)

// meter counts a copy's progress and reports it every interval while it
// moves.
type meter struct {
	bytes, files atomic.Int64
	total        contract.Progress
	done         chan struct{}
	finished     chan struct{}
}

// startMeter starts counting; it reports to fn, when set, from a goroutine
// of its own until stop.
func startMeter(fn ProgressFunc, every time.Duration, total contract.Progress) *meter {
	m := &meter{total: total, done: make(chan struct{}), finished: make(chan struct{})}
	if fn == nil {
		close(m.finished)
		return m
	}
	go func() {
		defer close(m.finished)
		tick := time.NewTicker(every)
		defer tick.Stop()
		var last contract.Progress
		for {
			select {
			case <-m.done:
				return
			case <-tick.C:
				p := m.total
				p.BytesDone, p.FilesDone = m.bytes.Load(), m.files.Load()
				if p != last {
					fn(p)
					last = p
				}
			}
		}
	}()
	return m
}

func (m *meter) stop() {
	close(m.done)
	<-m.finished
}
