package service

import (
	"errors"
	"io"
	"math"
	"net/http"
	"time"
)

// HTTPTimeouts bound every connection of every HTTP server the project
// runs (the gateway's API, the stager's download listener, the ops
// listeners): a client sending its request slowly, or holding a connection
// idle, is cut off. A zero field takes its default.
type HTTPTimeouts struct {
	Read  time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"30s" help:"longest time to read one request, headers and body"`
	Write time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"60s" help:"longest time to write one response; a download or event stream gets this long for each write of up to 512 KiB"`
	Idle  time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"60s" help:"how long a keep-alive connection may stay idle between requests"`
}

// Defaults of HTTPTimeouts, and the bounds on reading a request's headers:
// their time, and their size (Go's default is 1 MiB; a bearer token with
// many roles needs a few KiB).
const (
	DefaultHTTPReadTimeout  = 30 * time.Second
	DefaultHTTPWriteTimeout = 60 * time.Second
	DefaultHTTPIdleTimeout  = 60 * time.Second
	readHeaderTimeout       = 10 * time.Second
	MaxHeaderBytes          = 64 << 10
)

func (t HTTPTimeouts) withDefaults() HTTPTimeouts {
	if t.Read <= 0 {
		t.Read = DefaultHTTPReadTimeout
	}
	if t.Write <= 0 {
		t.Write = DefaultHTTPWriteTimeout
	}
	if t.Idle <= 0 {
		t.Idle = DefaultHTTPIdleTimeout
	}
	return t
}

// newServer is the http.Server of every listener, with t's bounds.
func newServer(h http.Handler, t HTTPTimeouts) *http.Server {
	t = t.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: min(readHeaderTimeout, t.Read),
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// streamChunk is the most one write of a stream sends under one deadline:
// a client must take in 512 KiB per write timeout (about 8.7 kB/s at the
// default 60s) to stay connected.
const streamChunk = 512 << 10

// StreamWriter returns w for a response that may take longer than the
// server's write timeout: a download, an event stream, an answer given
// after a long wait. Before each write of at most 512 KiB it moves the
// connection's write deadline one write timeout ahead, so the response
// runs as long as its client keeps reading, and a client that stops
// reading is cut off one write timeout later. The write timeout is that of
// the http.Server serving r; outside one, or with none, w is returned as
// it is. Files keep their sendfile path: ReadFrom hands them on in chunks.
func StreamWriter(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil || srv.WriteTimeout <= 0 {
		return w
	}
	return &streamWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: srv.WriteTimeout}
}

type streamWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (s *streamWriter) extend() error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

func (s *streamWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if err := s.extend(); err != nil {
			return written, err
		}
		n, err := s.ResponseWriter.Write(p[:min(len(p), streamChunk)])
		written += n
		if err != nil {
			return written, err
		}
		p = p[n:]
	}
	return written, nil
}

// ReadFrom sends src in chunks, each through the wrapped writer's own
// ReadFrom: a file (or a file limited to a range) stays a file, so the
// connection can send it with sendfile.
func (s *streamWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := s.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(struct{ io.Writer }{s}, src)
	}
	lr, ok := src.(*io.LimitedReader)
	if !ok {
		lr = &io.LimitedReader{R: src, N: math.MaxInt64}
	}
	var total int64
	for lr.N > 0 {
		if err := s.extend(); err != nil {
			return total, err
		}
		chunk := &io.LimitedReader{R: lr.R, N: min(lr.N, streamChunk)}
		want := chunk.N
		n, err := rf.ReadFrom(chunk)
		total += n
		lr.N -= n
		if err != nil || n < want {
			return total, err
		}
	}
	return total, nil
}

// Unwrap lets http.ResponseController reach the writers underneath.
func (s *streamWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
