package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/skao/skao-staging/libs/natsembed"
)

// startNATS starts the embedded NATS server on listen (host:port). When
// that port is taken, typically by a NATS server the machine already runs,
// it says so in notice and takes a free port instead, so other programs can
// still publish to the URL it prints.
func startNATS(listen, storeDir string) (srv *server.Server, notice string, err error) {
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, "", fmt.Errorf("STAGING_NATS_LISTEN %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return nil, "", fmt.Errorf("STAGING_NATS_LISTEN %q: port: %w", listen, err)
	}
	if port == 0 {
		port = -1 // nats-server reads 0 as its default port, not "any"
	}
	if port > 0 && portInUse(listen) {
		notice = fmt.Sprintf("port %d on %s is already in use (another NATS server?); the embedded NATS server takes a free port instead", port, host)
		port = -1
	}
	srv, err = natsembed.Start(natsembed.Options{Host: host, Port: port, StoreDir: storeDir, ServerName: "stagingd"})
	if err != nil {
		return nil, "", err
	}
	return srv, notice, nil
}

func portInUse(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	ln.Close()
	return false
}
