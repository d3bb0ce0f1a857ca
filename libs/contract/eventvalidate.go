package contract

import (
	"encoding/json"
	"regexp"
	"time"
	"unicode/utf8"
)

// Limits on event fields, in characters unless said otherwise. The request
// fields an event repeats are bounded by what the audit's record holds;
// EventFor cuts them to fit (a rejected event repeats refused input, which
// may be longer).
const (
	MaxEventIDLen       = 128       // id, download_id
	MaxEventNameLen     = 128       // source, origin
	MaxEventTextLen     = 65536     // message, error.detail, range
	MaxEventSize        = 256 << 10 // bytes of the whole message
	maxEventMethodLen   = 32
	maxEventUsernameLen = 64
)

var (
	specVersionRE = regexp.MustCompile(`^1(\.[0-9]+)?$`)
	errorCodeRE   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	traceIDRE     = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// Event times lie in [minEventTime, endEventTime): nothing of this system
// happened before 1970, and no store keeps a year past 9999.
var (
	minEventTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	endEventTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Validate checks the event against the event rules of docs/messages.md
// (event.schema.json says the same where a schema can) and returns the
// first problem as an *Error. Two rules need more than the event:
// CheckSubject compares it with the subject it came on, and only a reader
// of the stream can tell whether a resolved, progress or succeeded event
// follows a started one.
func (e Event) Validate() error {
	if err := checkEnvelope(e.SpecVersion, e.ID, e.Time, e.Source, e.RequestID, e.TraceID); err != nil {
		return err
	}
	switch e.Type {
	case "":
		return Errorf(CodeMissingField, "type is required")
	case EventQueued, EventRejected, EventStarted, EventResolved, EventProgress, EventSucceeded, EventFailed, EventCancelled, EventExpired:
	default:
		return Errorf(CodeUnknownEventType, "unknown event type %q; known types: queued, rejected, started, resolved, progress, succeeded, failed, cancelled, expired", cut(string(e.Type), 64))
	}
	if err := e.checkRequestFields(); err != nil {
		return err
	}
	switch {
	case e.Attempt < 0:
		return Errorf(CodeMalformed, "attempt must not be negative")
	case e.JobSize < 0:
		return Errorf(CodeMalformed, "job_size must not be negative")
	case e.Bytes < 0 || e.Files < 0:
		return Errorf(CodeMalformed, "bytes and files must not be negative")
	case e.Type == EventSucceeded && e.Outcome == "":
		return Errorf(CodeMissingField, "outcome is required on a succeeded event")
	case e.Outcome != "" && e.Outcome != OutcomeStaged && e.Outcome != OutcomeAlreadyPresent && e.Outcome != OutcomeLinkIssued:
		return Errorf(CodeMalformed, "unknown outcome %q", cut(string(e.Outcome), 64))
	case (e.Type == EventFailed || e.Type == EventRejected || e.Type == EventCancelled) && e.Error == nil:
		return Errorf(CodeMissingField, "error is required on a %s event", e.Type)
	case e.Type == EventCancelled && e.CancelledBy == "":
		return Errorf(CodeMissingField, "cancelled_by is required on a cancelled event")
	case e.Type != EventCancelled && e.CancelledBy != "":
		return Errorf(CodeMalformed, "cancelled_by belongs only to a cancelled event")
	case e.Type == EventExpired && e.ExpiresAt == nil:
		return Errorf(CodeMissingField, "expires_at is required on an expired event")
	case e.ExpiresAt != nil && e.Type != EventSucceeded && e.Type != EventExpired:
		return Errorf(CodeMalformed, "expires_at belongs only to a succeeded or expired event")
	case e.ExpiresAt != nil && (e.ExpiresAt.Before(minEventTime) || !e.ExpiresAt.Before(endEventTime)):
		return Errorf(CodeMalformed, "expires_at %s is not between 1970 and 9999", e.ExpiresAt.Format(time.RFC3339Nano))
	case e.Type == EventProgress && e.Progress == nil:
		return Errorf(CodeMissingField, "progress is required on a progress event")
	case e.Progress != nil && (e.Progress.BytesDone < 0 || e.Progress.BytesTotal < 0 || e.Progress.FilesDone < 0 || e.Progress.FilesTotal < 0):
		return Errorf(CodeMalformed, "progress counts must not be negative")
	case e.Adler32 != "" && !adler32RE.MatchString(e.Adler32):
		return Errorf(CodeMalformed, "adler32 must be 8 lower-case hex digits")
	case e.ExpectedAdler32 != "" && !adler32RE.MatchString(e.ExpectedAdler32):
		return Errorf(CodeMalformed, "expected_adler32 must be 8 lower-case hex digits")
	}
	if e.ConflictsWith != "" {
		if err := ValidateID("conflicts_with", e.ConflictsWith); err != nil {
			return err
		}
		if e.Type != EventRejected || e.Error == nil || e.Error.Code != CodeIDConflict {
			return Errorf(CodeMalformed, "conflicts_with belongs only to a rejected event with code %s", CodeIDConflict)
		}
	}
	if err := checkError(e.Error); err != nil {
		return err
	}
	if err := checkResolved(e.Type, e.DID, e.Resolved); err != nil {
		return err
	}
	if err := checkText("cancelled_by", e.CancelledBy, MaxEventNameLen); err != nil {
		return err
	}
	return checkText("message", e.Message, MaxEventTextLen)
}

// checkRequestFields checks the request fields the event repeats. Those of
// a rejected or failed event may be refused input (a failed event may come
// from a command that could not even be read), so only their length is
// bounded; every other event is about a command that passed Validate, and
// its fields follow the command rules.
func (e Event) checkRequestFields() error {
	if e.Type == EventRejected || e.Type == EventFailed {
		for _, f := range []struct {
			name, value string
			max         int
			code        Code
		}{
			{"job_id", e.JobID, MaxIDLen, CodeInvalidID},
			{"method", string(e.Method), maxEventMethodLen, CodeInvalidMethod},
			{"username", e.Username, maxEventUsernameLen, CodeInvalidUsername},
			{"local_path_on_storage", e.LocalPathOnStorage, MaxPathLen, CodeInvalidPath},
			{"did", e.DID, MaxDIDLen, CodeInvalidDID},
			{"relative_path", e.RelativePath, MaxPathLen, CodeInvalidPath},
			{"origin", e.Origin, MaxEventNameLen, CodeMalformed},
		} {
			if utf8.RuneCountInString(f.value) > f.max {
				return Errorf(f.code, "%s is longer than %d characters", f.name, f.max)
			}
		}
		return nil
	}
	if e.JobID != "" {
		if err := ValidateID("job_id", e.JobID); err != nil {
			return err
		}
	}
	if e.Method != "" {
		if _, err := ParseMethod(cut(string(e.Method), maxEventMethodLen)); err != nil {
			return err
		}
	}
	if e.Username != "" {
		if err := ValidateUsername(e.Username); err != nil {
			return err
		}
	}
	if e.LocalPathOnStorage != "" {
		if err := ValidateSourcePath(e.LocalPathOnStorage); err != nil {
			return err
		}
	}
	if e.RelativePath != "" {
		if err := ValidateRelativePath(e.RelativePath); err != nil {
			return err
		}
	}
	return checkText("origin", e.Origin, MaxEventNameLen)
}

// Validate checks the download event as Event.Validate does an event.
func (d DownloadEvent) Validate() error {
	if err := checkEnvelope(d.SpecVersion, d.ID, d.Time, d.Source, d.RequestID, d.TraceID); err != nil {
		return err
	}
	switch d.Type {
	case "":
		return Errorf(CodeMissingField, "type is required")
	case DownloadStarted, DownloadCompleted, DownloadFailed:
	default:
		return Errorf(CodeUnknownEventType, "unknown download event type %q; known types: download_started, download_completed, download_failed", cut(string(d.Type), 64))
	}
	switch {
	case d.DownloadID == "":
		return Errorf(CodeMissingField, "download_id is required")
	case utf8.RuneCountInString(d.DownloadID) > MaxEventIDLen:
		return Errorf(CodeInvalidID, "download_id is longer than %d characters", MaxEventIDLen)
	case d.Size < 0 || d.Bytes < 0:
		return Errorf(CodeMalformed, "size and bytes must not be negative")
	case d.Type == DownloadStarted && d.Bytes != 0:
		return Errorf(CodeMalformed, "bytes must be 0 on download_started")
	case d.Type == DownloadFailed && d.Error == nil:
		return Errorf(CodeMissingField, "error is required on a download_failed event")
	}
	if d.Username != "" {
		if err := ValidateUsername(d.Username); err != nil {
			return err
		}
	}
	if d.LocalPathOnStorage != "" {
		if err := ValidateSourcePath(d.LocalPathOnStorage); err != nil {
			return err
		}
	}
	if utf8.RuneCountInString(d.DID) > MaxDIDLen {
		return Errorf(CodeInvalidDID, "did is longer than %d characters", MaxDIDLen)
	}
	if err := checkError(d.Error); err != nil {
		return err
	}
	if d.Range != "" && !downloadRangeRE.MatchString(d.Range) {
		return Errorf(CodeMalformed, "range must be the ranges sent, normalised: bytes=first-last, at most 16, comma-separated")
	}
	return nil
}

var downloadRangeRE = regexp.MustCompile(`^bytes=[0-9]{1,19}-[0-9]{1,19}(,[0-9]{1,19}-[0-9]{1,19}){0,15}$`)

// CheckSubject reports a subject_mismatch error unless subject is the
// event subject of the event's request: an event is about the request its
// subject names, and a reader of that subject alone must see all of them.
func (e Event) CheckSubject(subject string) error {
	if subject != EventSubject(e.RequestID) {
		return Errorf(CodeSubjectMismatch, "an event of request %s must be published on %s, not %s", e.RequestID, EventSubject(e.RequestID), cut(subject, 256))
	}
	return nil
}

// CheckSubject is Event.CheckSubject for a download event.
func (d DownloadEvent) CheckSubject(subject string) error {
	if subject != DownloadSubject(d.RequestID) {
		return Errorf(CodeSubjectMismatch, "a download event of request %s must be published on %s, not %s", d.RequestID, DownloadSubject(d.RequestID), cut(subject, 256))
	}
	return nil
}

// DecodeEvent parses and validates an event read on subject.
func DecodeEvent(subject string, data []byte) (Event, error) {
	var e Event
	if err := decodeEventJSON(data, &e); err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return e, err
	}
	return e, e.CheckSubject(subject)
}

// DecodeDownloadEvent parses and validates a download event read on
// subject.
func DecodeDownloadEvent(subject string, data []byte) (DownloadEvent, error) {
	var d DownloadEvent
	if err := decodeEventJSON(data, &d); err != nil {
		return DownloadEvent{}, err
	}
	if err := d.Validate(); err != nil {
		return d, err
	}
	return d, d.CheckSubject(subject)
}

func decodeEventJSON(data []byte, v any) error {
	if len(data) > MaxEventSize {
		return Errorf(CodeBodyTooLarge, "event of %d bytes; at most %d are accepted", len(data), MaxEventSize)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return Errorf(CodeMalformed, "event is not valid JSON of the event's shape: %v", err)
	}
	return nil
}

// checkEnvelope checks the fields every event and download event has.
func checkEnvelope(spec, id string, t time.Time, source, requestID, traceID string) error {
	switch {
	case spec == "":
		return Errorf(CodeMissingField, "spec_version is required")
	case !specVersionRE.MatchString(spec):
		return Errorf(CodeUnsupported, "spec_version %q is not supported; events of version 1.x are", cut(spec, 16))
	case id == "":
		return Errorf(CodeMissingField, "id is required")
	case utf8.RuneCountInString(id) > MaxEventIDLen:
		return Errorf(CodeInvalidID, "id is longer than %d characters", MaxEventIDLen)
	case t.IsZero():
		return Errorf(CodeMissingField, "time is required")
	case t.Before(minEventTime) || !t.Before(endEventTime):
		return Errorf(CodeMalformed, "time %s is not between 1970 and 9999", t.Format(time.RFC3339Nano))
	case source == "":
		return Errorf(CodeMissingField, "source is required")
	case utf8.RuneCountInString(source) > MaxEventNameLen:
		return Errorf(CodeMalformed, "source is longer than %d characters", MaxEventNameLen)
	case traceID != "" && !traceIDRE.MatchString(traceID):
		return Errorf(CodeMalformed, "trace_id must be 32 lower-case hex digits")
	}
	return ValidateID("request_id", requestID)
}

// checkError checks the error an event carries, if any: a code of the
// codes' shape (a newer publisher may know codes this version does not)
// and a detail.
func checkError(e *Error) error {
	switch {
	case e == nil:
		return nil
	case e.Code == "":
		return Errorf(CodeMissingField, "error.code is required")
	case !errorCodeRE.MatchString(string(e.Code)):
		return Errorf(CodeMalformed, "error.code must be 1 to 64 lower-case letters, digits and '_', starting with a letter")
	case e.Detail == "":
		return Errorf(CodeMissingField, "error.detail is required")
	}
	return checkText("error.detail", e.Detail, MaxEventTextLen)
}

func checkText(field, s string, max int) error {
	if utf8.RuneCountInString(s) > max {
		return Errorf(CodeMalformed, "%s is longer than %d characters", field, max)
	}
	return nil
}

// cut returns s cut to at most n characters.
func cut(s string, n int) string {
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
