package testenv

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/service"
)

// smallBuffer is the socket buffer of ServeHTTP's connections and of
// SlowClient's: small enough that a client reading slowly holds the
// server's writes back at once, not after megabytes of kernel buffers.
const smallBuffer = 32 << 10

// ServeHTTP serves h as a service does (service.ServeListener, its
// connections bounded by timeouts) on a loopback port with small socket
// send buffers, and returns its base URL. The server stops when the test
// ends.
func ServeHTTP(t testing.TB, h http.Handler, timeouts service.HTTPTimeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- service.ServeListener(ctx, slog.New(slog.DiscardHandler), "test", smallSendBuffers{ln}, h, time.Second, timeouts)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("test server: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		err = errors.Join(err, tc.SetWriteBuffer(smallBuffer))
	}
	return c, err
}

// SlowClient is an HTTP client whose connections have small receive
// buffers, for a test of a client reading slowly (ReadSlowly).
func SlowClient() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				err = errors.Join(err, tc.SetReadBuffer(smallBuffer))
			}
			return c, err
		},
	}}
}

// ReadSlowly reads r to its end, n bytes at each tick of every: a client
// slower than its network, whose pace the server has to follow. A body cut
// short is an error (io.ErrUnexpectedEOF from an HTTP body).
func ReadSlowly(r io.Reader, n int, every time.Duration) ([]byte, error) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	var out []byte
	buf := make([]byte, n)
	for {
		got := 0
		var err error
		for got < n && err == nil {
			var k int
			k, err = r.Read(buf[got:])
			got += k
		}
		out = append(out, buf[:got]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		<-tick.C
	}
}
