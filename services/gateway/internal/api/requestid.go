package api

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"

	"github.com/google/uuid"
)

// HeaderRequestID carries the request id on requests and responses.
const HeaderRequestID = "X-Request-Id"

// A caller's own request id is kept when it is short and plain, so it can
// go into logs without escaping.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

type ctxKey int

const (
	requestIDKey ctxKey = iota
	routeKey
)

// RequestID returns the request id of an HTTP request's context.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// withRequestID gives r an id, the caller's own when it is plain, and
// answers it in the response's header. Everything after reads it from the
// context: error bodies and, through requestIDLog, every log line.
func withRequestID(r *http.Request, w http.ResponseWriter) *http.Request {
	id := r.Header.Get(HeaderRequestID)
	if !requestIDRE.MatchString(id) {
		id = uuid.NewString()
	}
	w.Header().Set(HeaderRequestID, id)
	return r.WithContext(context.WithValue(r.Context(), requestIDKey, id))
}

// requestIDLog returns log adding the request id of each record's context,
// so no log call has to name it.
func requestIDLog(log *slog.Logger) *slog.Logger {
	return slog.New(requestIDHandler{log.Handler()})
}

type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := RequestID(ctx); id != "" {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
