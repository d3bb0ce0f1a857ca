// Package natstest gives tests a NATS server with JetStream: an embedded one
// on a random port with a temporary store (the default), or the external
// one named by STAGING_TEST_NATS_URL; and a connection to it set up as the
// services set theirs up.
package natstest

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/natsembed"
	"github.com/skao/skao-staging/libs/testenv"
)

// Start starts an embedded JetStream server for the test and returns its
// client URL. The server is shut down when the test ends.
func Start(t testing.TB) string {
	t.Helper()
	s := StartServer(t, t.TempDir())
	return s.ClientURL()
}

// StartServer starts an embedded JetStream server storing under dir, so a
// test can stop it and start another on the same store.
func StartServer(t testing.TB, dir string) *server.Server {
	t.Helper()
	s, err := natsembed.Start(natsembed.Options{Host: "127.0.0.1", Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// JetStream starts an embedded server for the test and connects to it as
// Connect does.
func JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return Connect(t, Start(t))
}

// Connect connects to the server at url with bus.Connect, as a service
// does (reconnecting forever, logs discarded), and makes sure the streams
// exist. The connection is closed when the test ends; closing it earlier
// is harmless.
func Connect(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := bus.Connect(url, t.Name(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if err := bus.EnsureStreams(ctx, js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// External returns the URL of the external NATS server for integration
// tests (STAGING_TEST_NATS_URL). Without one the test is skipped, or fails
// when STAGING_REQUIRE_INTEGRATION=1.
func External(t testing.TB) string {
	t.Helper()
	return testenv.Lookup(t, "STAGING_TEST_NATS_URL", "an external NATS server (scripts/nats-test-server.sh starts one)")
}

// PublishAll publishes msgs to JetStream asynchronously, each with its
// Nats-Msg-Id header if it has one, and returns once the server has
// stored every one. A loaded machine that stalls the publisher makes it
// wait for the outstanding ones rather than fail.
func PublishAll(t testing.TB, js jetstream.JetStream, msgs []*nats.Msg) {
	t.Helper()
	for _, m := range msgs {
		for {
			_, err := js.PublishMsgAsync(m)
			if err == nil {
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				t.Fatalf("publish %s: %v", m.Subject, err)
			}
			<-js.PublishAsyncComplete()
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		t.Fatalf("%d messages not all stored within a minute", len(msgs))
	}
}
