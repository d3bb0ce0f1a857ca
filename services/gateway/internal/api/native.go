package api

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// submitRequest is the body of POST /api/v1/stagings.
type submitRequest struct {
	Method             string `json:"method"`
	Username           string `json:"username"`
	LocalPathOnStorage string `json:"local_path_on_storage"`
	RelativePath       string `json:"relative_path"`
	ExpectedAdler32    string `json:"expected_adler32,omitempty"`
	// JupyterToken is the user's own JupyterHub token (jupyter_copy only);
	// a secret, never logged or echoed.
	JupyterToken string `json:"jupyter_token,omitempty"`
}

// submitted answers an accepted submission.
type submitted struct {
	ID        string          `json:"id"`
	Status    contract.Status `json:"status"`
	StatusURL string          `json:"status_url"`
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	var body submitRequest
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if !s.authorize(w, r, body.Username) {
		return
	}
	idem, ok := s.claimKey(w, r, "stagings", body)
	if !ok {
		return
	}
	cmd := s.command(body)
	if idem != nil {
		cmd.ID = idem.key.ID(0)
	}
	seen, err := s.seen(r.Context(), idem, cmd.ID)
	if err != nil {
		s.logFault(r, "idempotent_lookup_failed", err)
		writeError(w, r, err)
		return
	}
	if err := s.client.Validate(r.Context(), cmd); err != nil {
		if seen {
			body := errorFor(r, err)
			body.ID, body.StatusURL = cmd.ID, s.statusURL(cmd.ID)
			writeErrorBody(w, r, statusFor(contract.CodeOf(err)), body)
			return
		}
		s.reject(w, r, cmd, err)
		return
	}
	if !seen && !s.publish(w, r, cmd) {
		return
	}
	w.Header().Set("Location", s.statusURL(cmd.ID))
	writeJSON(w, http.StatusAccepted, submitted{ID: cmd.ID, Status: contract.StatusQueued, StatusURL: s.statusURL(cmd.ID)})
}

// publish submits cmd and answers 503 when it could not be; it reports
// whether the caller should go on answering. A full queue's refusal is
// recorded like any other.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, cmd contract.Command) bool {
	err := s.client.Submit(r.Context(), cmd)
	switch {
	case err == nil:
		return true
	case contract.CodeOf(err) == contract.CodeQueueFull:
		s.log.WarnContext(r.Context(), "submit_refused", "request_id", RequestID(r.Context()), "id", cmd.ID, "error", err)
		s.reject(w, r, refusedForNow(cmd), err)
		return false
	case errors.Is(err, stagings.ErrQueuedNotRecorded):
		s.log.WarnContext(r.Context(), "queued_event_not_recorded", "request_id", RequestID(r.Context()), "id", cmd.ID, "error", err)
		return true
	default:
		s.log.ErrorContext(r.Context(), "submit_failed", "request_id", RequestID(r.Context()), "id", cmd.ID, "error", err)
		writeError(w, r, err)
		return false
	}
}

// refusedForNow is cmd as recorded when a full queue refused it: under an
// id of its own and in no job, because the refusal is for now only. The
// submission's own id, which an Idempotency-Key names, stays free, so the
// same submission repeated later is published, not answered from this
// record.
func refusedForNow(cmd contract.Command) contract.Command {
	cmd.ID, cmd.JobID = uuid.NewString(), ""
	return cmd
}

// reject records cmd as rejected, so the audit keeps every refused request
// too, and answers the validation error with the id it was recorded under.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, cmd contract.Command, cause error) {
	body := errorFor(r, cause)
	if err := s.client.Reject(r.Context(), cmd, cause); err != nil {
		// The caller's mistake is still the answer; only the record is lost.
		s.log.WarnContext(r.Context(), "rejection_not_recorded", "request_id", body.RequestID, "id", cmd.ID, "error", err)
	} else {
		body.ID, body.StatusURL = cmd.ID, s.statusURL(cmd.ID)
	}
	writeErrorBody(w, r, statusFor(contract.CodeOf(cause)), body)
}

// decodeBody reads a JSON body of at most limit bytes into v. Its
// Content-Type must be JSON: a form or text/plain body is what a page on
// another site can make a browser post without asking (CORS lets "simple"
// requests through), so refusing it stops cross-site posts.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if err := jsonContent(r, false); err != nil {
		return err
	}
	return readJSON(w, r, limit, v)
}

// decodeSeedBody is decodeBody for the seed's endpoints, which also take a
// body without a Content-Type, as the seed (FastAPI) did: scripts posting
// with Python requests' data= send none. A browser sends none only for a
// no-cors fetch of an untyped body, a cross-site post like a form's, so
// from a browser on another site (Sec-Fetch-Site) it is refused all the
// same.
func decodeSeedBody(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	if err := jsonContent(r, true); err != nil {
		return err
	}
	return readJSON(w, r, limit, v)
}

// jsonContent checks that r's Content-Type is application/json or another
// JSON type (application/*+json), parameters such as charset allowed. A
// request without one and without a body passes on, to be answered
// missing_field; untyped lets a body without one through unless a browser
// says it comes from another site.
func jsonContent(r *http.Request, untyped bool) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		site := r.Header.Get("Sec-Fetch-Site")
		if r.ContentLength == 0 || untyped && site != "cross-site" && site != "same-site" {
			return nil
		}
		return contract.Errorf(contract.CodeUnsupportedMediaType, "the request body must be JSON, sent with Content-Type: application/json")
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")) {
		return nil
	}
	return contract.Errorf(contract.CodeUnsupportedMediaType, "the request body must be JSON, sent with Content-Type: application/json; this one was sent as another type")
}

// readJSON reads a JSON body of at most limit bytes into v.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return contract.Errorf(contract.CodeBodyTooLarge, "request body is larger than %d bytes", limit)
		}
		return contract.Errorf(contract.CodeMalformed, "request body could not be read: %v", err)
	}
	if len(data) == 0 {
		return contract.Errorf(contract.CodeMissingField, "a JSON request body is required")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return contract.Errorf(contract.CodeMalformed, "request body is not valid JSON of the expected shape: %v", err)
	}
	return nil
}

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
		writeErrorBody(w, r, http.StatusBadRequest, errorFor(r, err))
		return
	}
	// Without a privileged role a caller lists only its own requests.
	if user, privileged := caller(r.Context()); !privileged {
		if q.Username == "" {
			q.Username = user
		}
		if !s.authorize(w, r, q.Username) {
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
		return q, contract.Errorf(contract.CodeMalformed, "status %q is not one of queued, running, succeeded, failed, rejected", q.Status)
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
		s.log.ErrorContext(r.Context(), msg, "request_id", RequestID(r.Context()), "error", err)
	}
}
