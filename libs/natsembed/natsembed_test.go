package natsembed

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// A closed server lets in, over TCP, only the client proving its nkey, and
// in-process any client, without credentials.
func TestClientNkeyClosesTheServer(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	s, err := Start(Options{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir(), ClientNkey: pub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})

	if nc, err := nats.Connect(s.ClientURL()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("TCP without credentials: %v, want %v", err, nats.ErrAuthorization)
	}
	if nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(inProcessUser, "")); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("TCP as the in-process user: %v, want %v", err, nats.ErrAuthorization)
	}
	for name, opts := range map[string][]nats.Option{
		"TCP with the nkey":              {nats.Nkey(pub, kp.Sign)},
		"in-process without credentials": {nats.InProcessServer(s)},
	} {
		nc, err := nats.Connect(s.ClientURL(), opts...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// JetStream answers: the client is in the account that has it.
		if _, err := nc.Request("$JS.API.INFO", nil, nats.DefaultTimeout); err != nil {
			t.Errorf("%s: JetStream: %v", name, err)
		}
		nc.Close()
	}
}

func TestOpenServerWithoutClientNkey(t *testing.T) {
	s, err := Start(Options{Host: "127.0.0.1", Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("TCP without credentials on an open server: %v", err)
	}
	nc.Close()
}
