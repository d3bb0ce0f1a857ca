package contract

import (
	"errors"
	"fmt"
)

// Code is a stable, machine-readable error code. Codes appear in failed and
// rejected events, in the audit record and in HTTP error bodies; they are
// never renamed.
type Code string

// Error codes of bad input. A request failing with one of these is never
// retried.
const (
	CodeMissingField     Code = "missing_field"      // a required field is absent or empty
	CodeMalformed        Code = "malformed"          // the message or body is not valid JSON of the expected shape
	CodeBodyTooLarge     Code = "body_too_large"     // the body exceeds the size limit
	CodeInvalidMethod    Code = "invalid_method"     // the method is not one the contract knows
	CodeMethodNotAllowed Code = "method_not_allowed" // the method is known but not allowed at this site
	CodeInvalidUsername  Code = "invalid_username"   // the username breaks the username rules
	CodeInvalidPath      Code = "invalid_path"       // a path field breaks the path rules
	CodeInvalidID        Code = "invalid_id"         // a request or job id breaks the id rules
	CodeUnsupported      Code = "unsupported_spec"   // spec_version is not one this service understands
	CodeMethodMismatch   Code = "method_mismatch"    // a command's method is not the one of the subject it was published on
	CodeIDConflict       Code = "id_conflict"        // a command reuses the id of another request with different fields
)

// Error codes of the staging itself.
const (
	CodeSourceNotFound   Code = "source_not_found"  // the source does not exist on the storage
	CodeOutsideStorage   Code = "outside_storage"   // the source lies outside every storage root
	CodeOutsideUserArea  Code = "outside_user_area" // the target lies outside the user's area
	CodeTargetConflict   Code = "target_conflict"   // something different already exists at the target
	CodeCrossDevice      Code = "cross_device"      // a hard link across filesystems was asked for
	CodeNoSpace          Code = "no_space"          // the target filesystem lacks the space
	CodeQuotaExceeded    Code = "quota_exceeded"    // the copy would take the user over their quota in the user area
	CodeChecksumMismatch Code = "checksum_mismatch" // the copy does not match the expected checksum
	CodeIOError          Code = "io_error"          // the filesystem failed while staging
	CodeRetriesExhausted Code = "retries_exhausted" // the request failed on every allowed delivery
	CodeUnavailable      Code = "unavailable"       // a dependency (NATS, database, hub) is unreachable
	CodeQueueFull        Code = "queue_full"        // the command queue holds as many commands as it may; try again later
	CodeQueueExpired     Code = "queue_expired"     // the command waited in the queue longer than it keeps commands, and no worker took it
	CodeTimeout          Code = "timeout"           // the outcome was not known in time
	CodeNotFound         Code = "not_found"         // no such request
	CodeAlreadyFinished  Code = "already_finished"  // a cancel named a request that has already ended
	CodeCancelled        Code = "cancelled"         // the request was cancelled (the error of a cancelled event, naming who)
	CodeInternal         Code = "internal"          // a fault of the service itself
)

// Error codes of the HTTP gateway's access control and idempotency.
const (
	CodeUnauthorized         Code = "unauthorized"           // no credentials, or invalid or expired ones
	CodeForbidden            Code = "forbidden"              // the caller may not act for that user
	CodeIdempotencyKeyReused Code = "idempotency_key_reused" // an Idempotency-Key was reused with a different request
	CodeUnsupportedMediaType Code = "unsupported_media_type" // a JSON endpoint was sent a body of another Content-Type
)

// Error codes of download links (in download_failed events).
const (
	CodeClientGone          Code = "client_gone"           // the client closed the connection before the download ended
	CodeRangeNotSatisfiable Code = "range_not_satisfiable" // a Range header asks for no byte of the file, or for too many or overlapping ranges
)

// Error codes of events the audit refuses to record (see
// Event.Validate); they name the reason an event is quarantined.
const (
	CodeUnknownEventType Code = "unknown_event_type" // the event's type is not one the contract knows
	CodeSubjectMismatch  Code = "subject_mismatch"   // the event's request_id differs from its subject's
	CodeNoStartedEvent   Code = "no_started_event"   // a progress or succeeded event whose request has no started event before it
)

// Error codes of jupyter_copy.
const (
	CodeJupyterUserNotFound Code = "jupyter_user_not_found" // the hub has no such user
	CodeJupyterForbidden    Code = "jupyter_forbidden"      // the hub or the user's server refused the token
	CodeJupyterSpawnFailed  Code = "jupyter_spawn_failed"   // the user's server failed to start
	CodeJupyterTimeout      Code = "jupyter_timeout"        // the user's server did not start in time (retried)
	CodeJupyterBodyTooLarge Code = "jupyter_body_too_large" // an upload exceeded the server's body limit
	CodeJupyterUnavailable  Code = "jupyter_unavailable"    // the hub is unreachable (retried)
)

// Error codes of a request by Rucio DID.
const (
	CodeInvalidDID         Code = "invalid_did"         // the did is not scope:name within Rucio's limits
	CodeDIDNotFound        Code = "did_not_found"       // the site's Rucio knows no such DID, or no file of it
	CodeNotAtSite          Code = "not_at_site"         // a file of the DID has no replica on the site's RSE; the detail names the RSEs that hold it
	CodeReplicaUnavailable Code = "replica_unavailable" // the replica on the site's RSE is not AVAILABLE, or not on the mounted storage
	CodeRucioUnavailable   Code = "rucio_unavailable"   // the site's Rucio is unreachable, failing or refusing the service (retried)
	CodeSizeMismatch       Code = "size_mismatch"       // a file's size differs from the catalogue's
)

// Error is an error carrying a stable code and a human-readable detail.
// Details never contain secrets.
type Error struct {
	Code   Code   `json:"code"`
	Detail string `json:"detail"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Detail }

// Errorf returns an *Error with code and a formatted detail.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// CodeOf returns the code of the first *Error in err's chain, or
// CodeInternal when there is none.
func CodeOf(err error) Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInternal
}

// AsError returns err as an *Error: the first one in its chain, or an
// internal error carrying err's text.
func AsError(err error) *Error {
	if e, ok := errors.AsType[*Error](err); ok {
		return e
	}
	return &Error{Code: CodeInternal, Detail: err.Error()}
}
