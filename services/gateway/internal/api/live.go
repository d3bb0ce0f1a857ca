package api

import (
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/libs/contract"
)

// WriteError answers err as the API's JSON error body (code, detail,
// request id), for handlers built outside this package such as the live
// event streams.
func WriteError(w http.ResponseWriter, r *http.Request, err error) { writeError(w, r, err) }

// EventVisibility is the live streams' authorization (live.Visibility):
// with authentication off, or for an admin or service caller, every event;
// otherwise only the caller's own requests, and asking for another user's
// (?username=) is refused.
func EventVisibility(r *http.Request) (func(username string) bool, error) {
	user, privileged := caller(r.Context())
	if privileged {
		return nil, nil
	}
	if q := r.URL.Query().Get("username"); q != "" {
		if err := mayActFor(r.Context(), q); err != nil {
			return nil, err
		}
	}
	return func(u string) bool { return u == user }, nil
}

// liveRoutes mounts the live event streams, the system log window and the
// web UI, each only when configured.
func (s *Server) liveRoutes(r *mux.Router) {
	if s.cfg.Events != nil {
		r.HandleFunc("/api/v1/stagings/{id}/events", s.cfg.Events.ServeRequest).Methods(http.MethodGet)
		r.HandleFunc("/api/v1/events", s.cfg.Events.ServeAll).Methods(http.MethodGet)
	}
	if s.cfg.Logs != nil {
		r.HandleFunc("/logs/", s.logs).Methods(http.MethodGet)
		r.HandleFunc("/logs", s.logs).Methods(http.MethodGet)
	}
	if s.cfg.UI != nil {
		r.Handle("/", s.cfg.UI).Methods(http.MethodGet, http.MethodHead)
		r.Handle("/ui/{file}", s.cfg.UI).Methods(http.MethodGet, http.MethodHead)
	}
}

// logLines is GET /logs/: the newest log lines of the whole system, each
// one JSON record as its service wrote it, newest last.
type logLines struct {
	Lines []string `json:"lines"`
}

// logs shows every user's activity, so with authentication on only a
// privileged caller may read it.
func (s *Server) logs(w http.ResponseWriter, r *http.Request) {
	if !privileged(w, r, "reading the system's logs") {
		return
	}
	n := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		if err != nil || n < 1 {
			writeErrorStatus(w, r, http.StatusBadRequest, contract.Errorf(contract.CodeMalformed, "limit must be a whole number of at least 1"))
			return
		}
	}
	writeJSON(w, http.StatusOK, logLines{Lines: s.cfg.Logs.Last(n)})
}
