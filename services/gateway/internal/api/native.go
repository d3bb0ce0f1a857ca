package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/libs/contract"
)

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	state, err := s.client.Get(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		s.logFault(r, "get_failed", err)
		writeError(w, r, err)
		return
	}
	// Another user's request is answered as unknown, as the event stream
	// answers it: a 403 would confirm that the id exists.
	if mayActFor(r.Context(), state.Username) != nil {
		writeError(w, r, contract.Errorf(contract.CodeNotFound, "no staging request with id %s", state.ID))
		return
	}
	writeJSON(w, http.StatusOK, state)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q, err := listQuery(r)
	if err != nil {
		writeErrorStatus(w, r, http.StatusBadRequest, err)
		return
	}
	// Without a privileged role a caller lists only its own requests.
	if user, privileged := caller(r.Context()); !privileged {
		if q.Username == "" {
			q.Username = user
		}
		if err := mayActFor(r.Context(), q.Username); err != nil {
			writeError(w, r, err)
			return
		}
	}
	reply, err := s.client.List(r.Context(), q)
	if err != nil {
		s.logFault(r, "list_failed", err)
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, reply)
}

// listQuery reads the list filters; any bad one is the caller's mistake.
func listQuery(r *http.Request) (contract.AuditListRequest, error) {
	v := r.URL.Query()
	q := contract.AuditListRequest{
		Username: v.Get("username"),
		Status:   contract.Status(v.Get("status")),
		Method:   contract.Method(v.Get("method")),
		JobID:    v.Get("job_id"),
		Cursor:   v.Get("cursor"),
	}
	if q.Username != "" {
		if err := contract.ValidateUsername(q.Username); err != nil {
			return q, err
		}
	}
	if q.Method != "" {
		if _, err := contract.ParseMethod(string(q.Method)); err != nil {
			return q, err
		}
	}
	if q.Status != "" && q.Status.Rank() == 0 {
		return q, contract.Errorf(contract.CodeMalformed, "status %q is not one of queued, running, succeeded, failed, rejected, cancelled", q.Status)
	}
	if q.JobID != "" {
		if err := contract.ValidateID("job_id", q.JobID); err != nil {
			return q, err
		}
	}
	for name, dst := range map[string]*time.Time{"since": &q.Since, "until": &q.Until} {
		if s := v.Get(name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, contract.Errorf(contract.CodeMalformed, "%s must be an RFC 3339 time such as 2026-01-02T15:04:05Z", name)
			}
			*dst = t
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return q, contract.Errorf(contract.CodeMalformed, "limit must be a whole number from 1 to 500")
		}
		q.Limit = n
	}
	return q, nil
}

func (s *Server) methods(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, allowedMethods{Methods: s.client.Allowed()})
}

type allowedMethods struct {
	Methods contract.MethodSet `json:"allowed_methods"`
}

// logFault logs errors that are the system's, not the caller's.
func (s *Server) logFault(r *http.Request, msg string, err error) {
	if statusFor(contract.CodeOf(err)) >= 500 {
		s.log.ErrorContext(r.Context(), msg, "error", err)
	}
}
