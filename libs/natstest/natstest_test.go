package natstest_test

import (
	"testing"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
)

func TestJetStreamHasTheStreams(t *testing.T) {
	nc, js := natstest.JetStream(t)
	if !nc.IsConnected() {
		t.Fatalf("connection status = %v, want connected", nc.Status())
	}
	for _, name := range []string{contract.StreamRequests, contract.StreamEvents} {
		if _, err := js.Stream(t.Context(), name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
}
