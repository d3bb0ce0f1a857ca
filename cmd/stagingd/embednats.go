package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/skao/skao-staging/libs/natsembed"
)

// startNATS starts the embedded NATS server on listen (host:port), closed
// to network clients without clientNkey's seed when clientNkey is set. When
// that port is taken, typically by a NATS server the machine already runs,
// it says so in notice and takes a free port instead, so other programs can
// still publish to the URL it prints.
func startNATS(listen, storeDir, clientNkey string) (srv *server.Server, notice string, err error) {
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
	srv, err = natsembed.Start(natsembed.Options{Host: host, Port: port, StoreDir: storeDir, ServerName: "stagingd", ClientNkey: clientNkey})
	if err != nil {
		return nil, "", err
	}
	return srv, notice, nil
}

// loadOrCreateNkey returns the public key of the user nkey whose seed is in
// file, first writing a new seed there (mode 0600) when the file does not
// exist. The seed is kept across restarts so that tools set up with it keep
// working; deleting the file and restarting replaces it. A file others may
// read is refused: its seed may have leaked.
func loadOrCreateNkey(file string) (string, error) {
	fi, err := os.Stat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return createNkey(file)
	}
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("NATS credentials %s have mode %04o, open to others: delete the file to have a new seed generated, or chmod 600 it if nobody else can have read it", file, perm)
	}
	seed, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
	}
	kp, err := nkeys.ParseDecoratedNKey(seed)
	if err != nil {
		return "", fmt.Errorf("NATS credentials %s: %w (delete the file to have a new seed generated)", file, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err == nil && !nkeys.IsValidPublicUserKey(pub) {
		err = errors.New("not a user nkey seed")
	}
	if err != nil {
		return "", fmt.Errorf("NATS credentials %s: %w (delete the file to have a new seed generated)", file, err)
	}
	return pub, nil
}

// createNkey writes a new user nkey seed, from crypto/rand, to file.
func createNkey(file string) (string, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
	}
	defer kp.Wipe()
	seed, err := kp.Seed()
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("NATS credentials: %w", err)
	}
	_, err = f.Write(append(seed, '\n'))
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		os.Remove(file)
		return "", fmt.Errorf("NATS credentials %s: %w", file, err)
	}
	return pub, nil
}

func portInUse(addr string) bool {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errors.Is(err, syscall.EADDRINUSE)
	}
	ln.Close()
	return false
}
