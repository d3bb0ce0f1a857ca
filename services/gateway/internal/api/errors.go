package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/skao/skao-staging/libs/contract"
)

// statusFor maps a contract code to an HTTP status: 4xx for the caller's
// mistakes and for stagings the data does not allow, 5xx only for faults of
// the system. The seed API's statuses (400 for a bad method or source, 422
// for a missing or malformed body) are kept.
func statusFor(code contract.Code) int {
	switch code {
	case contract.CodeMissingField, contract.CodeMalformed, contract.CodeChecksumMismatch,
		contract.CodeIdempotencyKeyReused:
		return http.StatusUnprocessableEntity
	case contract.CodeUnauthorized:
		return http.StatusUnauthorized
	case contract.CodeForbidden:
		return http.StatusForbidden
	case contract.CodeBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case contract.CodeUnsupportedMediaType:
		return http.StatusUnsupportedMediaType
	case contract.CodeInvalidMethod, contract.CodeMethodNotAllowed, contract.CodeInvalidUsername,
		contract.CodeInvalidPath, contract.CodeInvalidID, contract.CodeUnsupported,
		contract.CodeOutsideStorage, contract.CodeOutsideUserArea, contract.CodeSourceNotFound,
		contract.CodeInvalidDID:
		return http.StatusBadRequest
	case contract.CodeTargetConflict, contract.CodeCrossDevice, contract.CodeAlreadyFinished:
		return http.StatusConflict
	case contract.CodeNoSpace:
		return http.StatusInsufficientStorage
	case contract.CodeNotFound:
		return http.StatusNotFound
	case contract.CodeUnavailable, contract.CodeQueueFull:
		return http.StatusServiceUnavailable
	case contract.CodeTimeout:
		return http.StatusGatewayTimeout
	default:
		return http.StatusInternalServerError
	}
}

// errorBody is every error the gateway answers. The seed's clients read
// detail; new clients switch on code. ID and StatusURL are set when the
// refused request was recorded under an id.
type errorBody struct {
	Code      contract.Code `json:"code"`
	Detail    string        `json:"detail"`
	RequestID string        `json:"request_id,omitempty"`
	ID        string        `json:"id,omitempty"`
	StatusURL string        `json:"status_url,omitempty"`
}

// writeError answers err as JSON with the status its code maps to.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	writeErrorStatus(w, r, statusFor(contract.CodeOf(err)), err)
}

// writeErrorStatus answers err with a status of the endpoint's own (a seed
// endpoint's 400, a 405, the download proxy's 502).
func writeErrorStatus(w http.ResponseWriter, r *http.Request, status int, err error) {
	writeJSON(w, status, errorFor(r.Context(), err))
}

// writeRecorded answers err, which refused a request that the audit
// records under id, with that id and where its record is read.
func (s *Server) writeRecorded(w http.ResponseWriter, r *http.Request, err error, id string) {
	body := errorFor(r.Context(), err)
	body.ID, body.StatusURL = id, s.statusURL(id)
	writeJSON(w, statusFor(body.Code), body)
}

// errorFor is err as an error body, with the request id of ctx.
func errorFor(ctx context.Context, err error) errorBody {
	e := contract.AsError(err)
	detail := e.Detail
	if e.Code == contract.CodeInternal && !isContractError(err) {
		// An unexpected error's text may name internals; the log has it.
		detail = "internal error; the request id identifies it in the logs"
	}
	return errorBody{Code: e.Code, Detail: detail, RequestID: RequestID(ctx)}
}

func isContractError(err error) bool {
	_, ok := errors.AsType[*contract.Error](err)
	return ok
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	// The status is on the wire; a failed write means the client left.
	_ = json.NewEncoder(w).Encode(v)
}
