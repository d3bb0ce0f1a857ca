package service_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/testenv"
)

// echo answers a request with its body.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Write(body)
})

// awaitClose reads conn until the server closes it, and fails the test
// when it is still open after limit.
func awaitClose(t *testing.T, conn net.Conn, r io.Reader, limit time.Duration) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(limit)); err != nil {
		t.Fatal(err)
	}
	_, err := io.Copy(io.Discard, r)
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", limit)
	}
}

// A client sending its body a byte at a time is cut off once the read
// timeout has passed, however long it would go on.
func TestHTTPServerCutsOffSlowBody(t *testing.T) {
	url := testenv.ServeHTTP(t, echo, service.HTTPTimeouts{Read: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 1000
	if _, err := fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", size); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// 20 s of body, unless the server hangs up first.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range size {
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	awaitClose(t, conn, conn, 10*time.Second)
}

// A keep-alive connection left idle after its request is closed once the
// idle timeout has passed.
func TestHTTPServerClosesIdleConnection(t *testing.T) {
	url := testenv.ServeHTTP(t, echo, service.HTTPTimeouts{Idle: 300 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprint(conn, "POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hi" || resp.Close {
		t.Fatalf("answer = %q, %v (close %t), want hi on a kept-alive connection", body, err, resp.Close)
	}
	awaitClose(t, conn, br, 10*time.Second)
}

// Headers are bounded in size: a request with more than MaxHeaderBytes of
// them is refused 431.
func TestHTTPServerBoundsHeaders(t *testing.T) {
	url := testenv.ServeHTTP(t, echo, service.HTTPTimeouts{})
	for _, tt := range []struct {
		size int
		want int
	}{{service.MaxHeaderBytes / 2, http.StatusOK}, {2 * service.MaxHeaderBytes, http.StatusRequestHeaderFieldsTooLarge}} {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Padding", strings.Repeat("x", tt.size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%d bytes of headers: %d, want %d", tt.size, resp.StatusCode, tt.want)
		}
	}
}

// A response written through StreamWriter outlasts the write timeout for a
// client that reads slowly but steadily, whether it is written in one large
// write or sent from a file (sendfile); written straight to the
// connection, the same response is cut off.
func TestStreamWriterKeepsSlowReader(t *testing.T) {
	const size = 4 << 20
	content := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	file := filepath.Join(t.TempDir(), "content")
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/plain", func(w http.ResponseWriter, _ *http.Request) {
		for p := content; len(p) > 0; p = p[64<<10:] {
			if _, err := w.Write(p[:64<<10]); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		service.StreamWriter(w, r).Write(content)
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Length", fmt.Sprint(size))
		io.Copy(service.StreamWriter(w, r), f)
	})
	// The client takes 128 KiB every 40 ms: a 512 KiB write waits about
	// 160 ms for it, the whole body over twice the write timeout.
	url := testenv.ServeHTTP(t, mux, service.HTTPTimeouts{Write: 600 * time.Millisecond})
	client := testenv.SlowClient()
	for _, tt := range []struct {
		path   string
		cutOff bool
	}{{"/plain", true}, {"/write", false}, {"/file", false}} {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := client.Get(url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := testenv.ReadSlowly(resp.Body, 128<<10, 40*time.Millisecond)
			whole := err == nil && bytes.Equal(got, content)
			if whole == tt.cutOff {
				t.Errorf("read %d of %d bytes (%v); cut off: %t, want %t", len(got), size, err, !whole, tt.cutOff)
			}
		})
	}
}
