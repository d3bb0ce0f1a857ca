package live_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/live"
)

// TestRequestStreamNoGapsNoDuplicates publishes a request's events while
// its streams read the history and switch to live events: every stream
// must write each stored event once, in order, with its sequence, and end
// after the terminal one.
func TestRequestStreamNoGapsNoDuplicates(t *testing.T) {
	f := newFixture(t, live.Config{})
	const progress = 40
	want := []string{seq(f.publish(t, "req1", "alice", contract.EventQueued))}
	const streams = 4
	var opened []*stream
	for i := range progress {
		if i%(progress/streams) == 0 {
			// A stream opens between two events, some way into them, and
			// reads its history while the next ones are published.
			opened = append(opened, f.open(t, "/api/v1/stagings/req1/events", nil))
		}
		want = append(want, seq(f.publish(t, "req1", "alice", contract.EventProgress)))
	}
	want = append(want, seq(f.publish(t, "req1", "alice", contract.EventSucceeded)))
	for i, st := range opened {
		var got []string
		for {
			fr, ok := st.next(t, false)
			if !ok {
				break
			}
			got = append(got, fr.ID)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("stream %d: ids (-got +want):\n%s", i, diff)
		}
	}
}
