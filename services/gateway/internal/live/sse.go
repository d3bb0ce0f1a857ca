package live

import (
	"bytes"
	"errors"
	"net/http"
	"time"
)

// sseWriter writes SSE frames, each flushed at once and bounded in time.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// start answers the headers of an event stream.
func (h *Handler) start(w http.ResponseWriter, r *http.Request) *sseWriter {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: h.cfg.WriteTimeout}
	// retry: how long a browser waits before reconnecting.
	if err := sw.write([]byte("retry: 3000\n\n")); err != nil {
		h.cfg.Log.DebugContext(r.Context(), "sse_start_failed", "error", err)
		return nil
	}
	return sw
}

func (s *sseWriter) event(id, typ string, data []byte) error {
	var b bytes.Buffer
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	b.WriteString("event: " + typ + "\n")
	// data is compact JSON: one line, no newline to split.
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	return s.write(b.Bytes())
}

func (s *sseWriter) comment(text string) error {
	return s.write([]byte(": " + text + "\n\n"))
}

func (s *sseWriter) write(p []byte) error {
	// A client that stops reading must not hold the handler for ever.
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	if _, err := s.w.Write(p); err != nil {
		return err
	}
	return s.rc.Flush()
}
