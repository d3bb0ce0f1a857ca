// Package natsembed runs a nats-server with JetStream inside the process,
// for the all-in-one binary and for tests.
package natsembed

import (
	"errors"
	"fmt"
	"time"

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
}

// Start starts the server and waits until it accepts clients.
func Start(o Options) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: a JetStream store directory is required")
	}
	s, err := server.NewServer(&server.Options{
		ServerName: o.ServerName,
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
	})
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
