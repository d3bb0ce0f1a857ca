// Package natstest gives tests a NATS server with JetStream: an embedded one
// on a random port with a temporary store (the default), or the external
// one named by STAGING_TEST_NATS_URL.
package natstest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"

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

// External returns the URL of the external NATS server for integration
// tests (STAGING_TEST_NATS_URL). Without one the test is skipped, or fails
// when STAGING_REQUIRE_INTEGRATION=1.
func External(t testing.TB) string {
	t.Helper()
	return testenv.Lookup(t, "STAGING_TEST_NATS_URL", "an external NATS server (scripts/nats-test-server.sh starts one)")
}
