package natstest_test

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
)

func TestJetStreamHasTheStreams(t *testing.T) {
	nc, js := natstest.JetStream(t)
	if !nc.IsConnected() {
		t.Fatalf("connection status = %v, want connected", nc.Status())
	}
	for _, name := range []string{contract.StreamRequests, contract.StreamEvents, contract.StreamCancels, contract.StreamExpiries} {
		if _, err := js.Stream(t.Context(), name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
}

// More messages than the publisher lets wait at once (4000 by default) are
// all stored, and a duplicate message id is stored once.
func TestPublishAll(t *testing.T) {
	_, js := natstest.JetStream(t)
	const n = 10_000
	msgs := make([]*nats.Msg, 0, n+1)
	for i := range n {
		m := nats.NewMsg(contract.EventSubject(fmt.Sprintf("req-%05d", i)))
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint("ev-", i))
		m.Data = []byte("{}")
		msgs = append(msgs, m)
	}
	msgs = append(msgs, msgs[0])
	natstest.PublishAll(t, js, msgs)
	s, err := js.Stream(t.Context(), contract.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().State.Msgs; got != n {
		t.Errorf("stream holds %d messages, want %d", got, n)
	}
}
