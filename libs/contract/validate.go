package contract

import (
	"encoding/json"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on command fields.
const (
	MaxUsernameLen = 32
	MaxIDLen       = 64
	MaxPathLen     = 4096
)

// A username is a POSIX-portable login name: lower-case letters, digits,
// '_' and '-', starting with a letter or '_'. It cannot hold '/', '.', '*',
// '>' or whitespace, so it can never act as a path or a NATS subject token.
var usernameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)

// An id is one NATS subject token: letters, digits, '_' and '-'.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

var adler32RE = regexp.MustCompile(`^[0-9a-f]{8}$`)

// ValidateUsername checks a username against the username rules.
func ValidateUsername(u string) error {
	switch {
	case u == "":
		return Errorf(CodeMissingField, "username is required")
	case len(u) > MaxUsernameLen:
		return Errorf(CodeInvalidUsername, "username is longer than %d characters", MaxUsernameLen)
	case !usernameRE.MatchString(u):
		return Errorf(CodeInvalidUsername, "username %q may only hold lower-case letters, digits, '_' and '-', and must start with a letter or '_'", u)
	}
	return nil
}

// ValidateID checks a request or job id.
func ValidateID(field, id string) error {
	switch {
	case id == "":
		return Errorf(CodeMissingField, "%s is required", field)
	case len(id) > MaxIDLen:
		return Errorf(CodeInvalidID, "%s is longer than %d characters", field, MaxIDLen)
	case !idRE.MatchString(id):
		return Errorf(CodeInvalidID, "%s may only hold letters, digits, '_' and '-'", field)
	}
	return nil
}

// ValidateSourcePath checks the form of local_path_on_storage. Whether it
// lies inside a storage root is decided by the worker that knows the roots.
func ValidateSourcePath(p string) error {
	if err := checkPathText("local_path_on_storage", p); err != nil {
		return err
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return Errorf(CodeOutsideStorage, "local_path_on_storage must not contain '..'")
		}
	}
	return nil
}

// Limits of a Rucio DID (Rucio's own: a scope of 25 characters, a name
// of 250).
const (
	maxScopeLen = 25
	maxNameLen  = 250
	MaxDIDLen   = maxScopeLen + 1 + maxNameLen
)

// ValidateDID checks the form of a Rucio DID, scope:name, and returns its
// two parts. Whether the site's Rucio knows it is decided by the worker.
func ValidateDID(did string) (scope, name string, err error) {
	scope, name, ok := strings.Cut(did, ":")
	switch {
	case !ok || scope == "" || name == "":
		return "", "", Errorf(CodeInvalidDID, "did must be scope:name, got %q", cut(did, 300))
	case len(scope) > maxScopeLen || !didScopeRE.MatchString(scope):
		return "", "", Errorf(CodeInvalidDID, "did %q: the scope is 1 to %d letters, digits, '.', '_' or '-'", cut(did, 300), maxScopeLen)
	case len(name) > maxNameLen || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) || strings.Contains(name, `\`):
		return "", "", Errorf(CodeInvalidDID, "did %q: the name is at most %d characters of printable UTF-8, without a backslash", cut(did, 300), maxNameLen)
	}
	return scope, name, nil
}

var didScopeRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// validateSource checks the source: exactly one of local_path_on_storage
// and did.
func (c Command) validateSource() error {
	switch {
	case c.DID != "" && c.LocalPathOnStorage != "":
		return Errorf(CodeMalformed, "give either local_path_on_storage or did, not both")
	case c.DID != "" && c.ExpectedAdler32 != "":
		return Errorf(CodeMalformed, "expected_adler32 is not given with a did: the catalogue's checksum of every file is checked")
	case c.DID != "":
		_, _, err := ValidateDID(c.DID)
		return err
	case c.LocalPathOnStorage == "":
		return Errorf(CodeMissingField, "local_path_on_storage (or did) is required")
	}
	return ValidateSourcePath(c.LocalPathOnStorage)
}

// ValidateRelativePath checks relative_path: a path below the user's area,
// never absolute, never climbing out with "..", never the area itself.
func ValidateRelativePath(p string) error {
	if err := checkPathText("relative_path", p); err != nil {
		return err
	}
	if strings.HasPrefix(p, "/") {
		return Errorf(CodeOutsideUserArea, "relative_path must be relative to the user's area, not absolute")
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return Errorf(CodeOutsideUserArea, "relative_path must not contain '..'")
		}
	}
	if path.Clean(p) == "." {
		return Errorf(CodeInvalidPath, "relative_path must name an entry inside the user's area")
	}
	return nil
}

func checkPathText(field, p string) error {
	switch {
	case p == "":
		return Errorf(CodeMissingField, "%s is required", field)
	case len(p) > MaxPathLen:
		return Errorf(CodeInvalidPath, "%s is longer than %d bytes", field, MaxPathLen)
	case !utf8.ValidString(p):
		return Errorf(CodeInvalidPath, "%s is not valid UTF-8", field)
	case strings.ContainsRune(p, 0):
		return Errorf(CodeInvalidPath, "%s contains a NUL byte", field)
	case strings.Contains(p, `\`):
		return Errorf(CodeInvalidPath, "%s contains a backslash; use '/' as separator", field)
	}
	return nil
}

// Validate checks every field of the command and returns the first problem
// as an *Error. The site's allowed methods are checked by the caller.
func (c Command) Validate() error {
	if c.SpecVersion == "" {
		return Errorf(CodeMissingField, "spec_version is required")
	}
	if !supportedSpec(c.SpecVersion) {
		return Errorf(CodeUnsupported, "spec_version %q is not supported; this service speaks %s", c.SpecVersion, SpecVersion)
	}
	if err := ValidateID("id", c.ID); err != nil {
		return err
	}
	if c.JobID != "" {
		if err := ValidateID("job_id", c.JobID); err != nil {
			return err
		}
	}
	if err := checkJobSize(c.JobID, c.JobSize); err != nil {
		return err
	}
	if _, err := ParseMethod(string(c.Method)); err != nil {
		return err
	}
	if err := ValidateUsername(c.Username); err != nil {
		return err
	}
	if err := c.validateSource(); err != nil {
		return err
	}
	if err := ValidateRelativePath(c.RelativePath); err != nil {
		return err
	}
	if c.JupyterToken != "" && (len(c.JupyterToken) < 8 || len(c.JupyterToken) > 512 || strings.ContainsFunc(c.JupyterToken, unicode.IsSpace)) {
		// The token itself is never echoed back.
		return Errorf(CodeMalformed, "jupyter_token must be 8 to 512 characters without spaces")
	}
	if c.JupyterToken != "" && c.Method != MethodJupyterCopy {
		return Errorf(CodeMalformed, "jupyter_token is only used by jupyter_copy")
	}
	if c.ExpectedAdler32 != "" && !adler32RE.MatchString(c.ExpectedAdler32) {
		return Errorf(CodeMalformed, "expected_adler32 must be 8 lower-case hex digits")
	}
	return checkLifetime(c.Method, c.Lifetime)
}

// MaxLifetime bounds lifetime (100 years in seconds), so that an expiry
// time always fits the stores.
const MaxLifetime = 100 * 365 * 24 * 3600

// checkLifetime checks a command's lifetime: only for the methods that
// leave an item in the user's area, which the stager can remove.
func checkLifetime(m Method, seconds int64) error {
	switch {
	case seconds < 0:
		return Errorf(CodeMalformed, "lifetime must not be negative")
	case seconds > MaxLifetime:
		return Errorf(CodeMalformed, "lifetime must be at most %d seconds", MaxLifetime)
	case seconds > 0 && !Expires(m):
		return Errorf(CodeMalformed, "lifetime applies to local_copy, local_symlink and local_hardlink, not %s", m)
	}
	return nil
}

// Expires reports whether what method m stages can be given a lifetime.
func Expires(m Method) bool {
	return m == MethodLocalCopy || m == MethodLocalSymlink || m == MethodLocalHardlink
}

// checkJobSize checks a command's job_size: only with a job_id.
func checkJobSize(jobID string, size int) error {
	switch {
	case size < 0:
		return Errorf(CodeMalformed, "job_size must not be negative")
	case size > 0 && jobID == "":
		return Errorf(CodeMalformed, "job_size belongs to an item of a job, and job_id is empty")
	}
	return nil
}

// supportedSpec accepts every minor version of the major version spoken here.
func supportedSpec(v string) bool {
	major, _, _ := strings.Cut(v, ".")
	want, _, _ := strings.Cut(SpecVersion, ".")
	return major == want
}

// DecodeCommand parses and validates a command. On a validation error the
// returned command still carries whatever fields could be read, so the
// caller can record the rejection under the request's id.
func DecodeCommand(data []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return Command{}, Errorf(CodeMalformed, "command is not valid JSON: %v", err)
	}
	return c, c.Validate()
}

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
// of the stream can tell whether a progress or succeeded event follows a
// started one.
func (e Event) Validate() error {
	if err := checkEnvelope(e.SpecVersion, e.ID, e.Time, e.Source, e.RequestID, e.TraceID); err != nil {
		return err
	}
	switch e.Type {
	case "":
		return Errorf(CodeMissingField, "type is required")
	case EventQueued, EventRejected, EventStarted, EventProgress, EventSucceeded, EventFailed, EventCancelled, EventExpired:
	default:
		return Errorf(CodeUnknownEventType, "unknown event type %q; known types: queued, rejected, started, progress, succeeded, failed, cancelled, expired", cut(string(e.Type), 64))
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
