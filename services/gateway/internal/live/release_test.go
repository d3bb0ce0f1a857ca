package live_test

import (
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/gateway/internal/live"
)

// TestStreamsDeleteTheirConsumers checks that a finished stream leaves no
// consumer on STAGING_EVENTS: left to their 5-minute inactive threshold,
// the consumers of a busy gateway's streams reached the stream's limit of
// 1000 and every new stream failed.
func TestStreamsDeleteTheirConsumers(t *testing.T) {
	f := newFixture(t, live.Config{})
	f.publish(t, "req1", "alice", contract.EventQueued)
	f.publish(t, "req1", "alice", contract.EventSucceeded)
	for range 3 {
		st := f.open(t, "/api/v1/stagings/req1/events", nil)
		st.take(t, 2)
		if fr, ok := st.next(t, false); ok {
			t.Fatalf("after the terminal event got %+v, want the end", fr)
		}
		<-f.served
	}
	stream, err := f.js.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "no consumers on STAGING_EVENTS after the streams ended", func() bool {
		info, err := stream.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Consumers == 0
	})
}
