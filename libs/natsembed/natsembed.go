// Package natsembed runs a nats-server with JetStream inside the process,
// for the all-in-one binary and for tests.
package natsembed

import (
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
)

// Options configures an embedded server.
type Options struct {
	// Host and Port of the client listener; Port -1 picks a free port.
	Host string
	Port int
	// StoreDir holds the JetStream data.
	StoreDir string
	// ServerName names the server in logs and monitoring.
	ServerName string
	// ClientNkey, a user's public nkey, closes the server when set: a
	// client connecting over the network must prove that nkey (and then
	// may do anything), while a client in the same process
	// (nats.InProcessServer) connects without credentials. Empty leaves
	// the server open to any client.
	ClientNkey string
}

// inProcessUser is the user a client without credentials becomes on a
// closed server; it may connect only in-process, so over the network a
// client without credentials is refused.
const inProcessUser = "in-process"

// Start starts the server and waits until it accepts clients.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: a JetStream store directory is required")
	}
	opts := &server.Options{
		ServerName: o.ServerName,
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	}
	if o.ClientNkey != "" {
		opts.Nkeys = []*server.NkeyUser{{Nkey: o.ClientNkey}}
		opts.Users = []*server.User{{
			Username:               inProcessUser,
			AllowedConnectionTypes: map[string]struct{}{jwt.ConnectionTypeInProcess: {}},
		}}
		opts.NoAuthUser = inProcessUser
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats on %s:%d did not become ready", o.Host, o.Port)
	}
	return s, nil
}
