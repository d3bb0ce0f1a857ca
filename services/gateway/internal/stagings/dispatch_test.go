package stagings

import (
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/skao/skao-staging/libs/contract"
)

func newTestWatch(id string, buffer int) *Watch {
	return &Watch{id: id, events: make(chan *nats.Msg, buffer)}
}

// received empties w's buffer and returns the subjects' data.
func received(w *Watch) []string {
	var got []string
	for {
		select {
		case m := <-w.events:
			got = append(got, string(m.Data))
		default:
			return got
		}
	}
}

func TestDispatcherDeliversByRequestID(t *testing.T) {
	d := newDispatcher(nil)
	a1, a2, b := newTestWatch("a", 4), newTestWatch("a", 4), newTestWatch("b", 4)
	for _, w := range []*Watch{a1, a2, b} {
		d.register(w)
	}
	send := func(subject, data string) { d.deliver(&nats.Msg{Subject: subject, Data: []byte(data)}) }
	send(contract.EventSubject("a"), "a-1")
	send(contract.EventSubject("b"), "b-1")
	send(contract.EventSubject("c"), "c-1")     // nobody's
	send("staging.commands.a", "not an event")  // not an event subject
	send(contract.EventSubject("a.b"), "a.b-1") // another request, not a's
	d.unregister(a2)
	send(contract.EventSubject("a"), "a-2")
	d.unregister(a2) // twice: harmless

	tests := []struct {
		name string
		w    *Watch
		want []string
	}{
		{"first watch of a", a1, []string{"a-1", "a-2"}},
		{"second watch of a, closed after a-1", a2, []string{"a-1"}},
		{"watch of b", b, []string{"b-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(received(tt.w), tt.want); diff != "" {
				t.Errorf("events (-got +want):\n%s", diff)
			}
		})
	}
	d.unregister(a1)
	d.unregister(b)
	if got := d.registered(); got != 0 {
		t.Errorf("%d watches registered after every one left, want 0", got)
	}
	if got := len(d.watches); got != 0 {
		t.Errorf("%d request ids left in the map, want 0", got)
	}
}

// TestDispatcherDropsWhenFull checks that a full watch neither blocks the
// dispatcher nor holds up another watch, and is told it lost events.
func TestDispatcherDropsWhenFull(t *testing.T) {
	d := newDispatcher(nil)
	full, other := newTestWatch("a", 2), newTestWatch("a", 8)
	d.register(full)
	d.register(other)
	for i := range 5 {
		d.deliver(&nats.Msg{Subject: contract.EventSubject("a"), Data: []byte{'0' + byte(i)}})
	}
	if diff := cmp.Diff(received(full), []string{"0", "1"}); diff != "" {
		t.Errorf("full watch (-got +want):\n%s", diff)
	}
	if !full.Dropped() {
		t.Error("full watch: Dropped() = false, want true")
	}
	if full.Dropped() {
		t.Error("Dropped() did not clear")
	}
	if diff := cmp.Diff(received(other), []string{"0", "1", "2", "3", "4"}); diff != "" {
		t.Errorf("other watch (-got +want):\n%s", diff)
	}
	if other.Dropped() {
		t.Error("other watch: Dropped() = true, want false")
	}
}

// TestDispatcherConcurrent registers, delivers and unregisters from many
// goroutines at once, for the race detector; each watch must get exactly
// the events sent while it was registered, in order.
func TestDispatcherConcurrent(t *testing.T) {
	d := newDispatcher(nil)
	const watches, events = 64, 32
	var wg sync.WaitGroup
	ready := make(chan *Watch)
	for i := range watches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newTestWatch(string(rune('A'+i%26))+string(rune('a'+i/26)), events)
			d.register(w)
			ready <- w
		}()
	}
	var all []*Watch
	for range watches {
		all = append(all, <-ready)
	}
	wg.Wait()
	var deliver sync.WaitGroup
	deliver.Add(1)
	go func() { // one goroutine, as the subscription's callback
		defer deliver.Done()
		for e := range events {
			for _, w := range all {
				d.deliver(&nats.Msg{Subject: contract.EventSubject(w.id), Data: []byte{byte(e)}})
			}
		}
	}()
	for _, w := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range events {
				m := <-w.events
				if m.Data[0] != byte(e) {
					t.Errorf("watch %s: event %d, want %d", w.id, m.Data[0], e)
					return
				}
			}
			d.unregister(w)
		}()
	}
	wg.Wait()
	deliver.Wait()
	if got := d.registered(); got != 0 {
		t.Errorf("%d watches registered, want 0", got)
	}
}
