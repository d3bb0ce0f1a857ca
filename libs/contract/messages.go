package contract

import "time"

// SpecVersion is the version of the message formats in this package. A
// consumer rejects a message whose spec_version it does not know.
const SpecVersion = "1.0"

// Command asks for one item (a file or a directory) to be staged. It is
// published on RequestSubject(Method) with Nats-Msg-Id set to ID.
type Command struct {
	SpecVersion string `json:"spec_version"`
	// ID identifies the request everywhere: events, audit, HTTP. Chosen by
	// the publisher (a UUID is recommended); see ValidateID.
	ID string `json:"id"`
	// JobID groups the commands of one batch; empty for a single request.
	JobID string `json:"job_id,omitempty"`
	// JobSize is how many items the job holds, so that a job whose
	// submission was cut short is known to miss some (job_id only).
	JobSize  int    `json:"job_size,omitempty"`
	Method   Method `json:"method"`
	Username string `json:"username"`
	// LocalPathOnStorage is the source: absolute inside a storage root, or
	// relative to it. Exactly one of it and DID is set.
	LocalPathOnStorage string `json:"local_path_on_storage,omitempty"`
	// DID is the source named as a Rucio data identifier (scope:name),
	// resolved by the worker against the site's Rucio into the files it
	// stands for on the site's RSE.
	DID string `json:"did,omitempty"`
	// RelativePath is the target, relative to the user's area.
	RelativePath string `json:"relative_path"`
	// ExpectedAdler32 is the source's checksum (8 hex digits, as Rucio
	// reports it); when set, the staged copy is compared with it.
	ExpectedAdler32 string `json:"expected_adler32,omitempty"`
	// Lifetime is how many seconds the staged item is kept (local_copy,
	// local_symlink and local_hardlink only); 0 asks for the site's
	// default (STAGING_DEFAULT_LIFETIME), and the site's maximum caps it.
	Lifetime int64 `json:"lifetime,omitempty"`
	// JupyterToken is the user's own JupyterHub token for jupyter_copy
	// (the seed API's jupyter_token); without it the bridge uses its
	// service token. A secret: it is never copied into events, the audit,
	// logs or error messages, and the command itself leaves the work queue
	// once handled.
	JupyterToken string `json:"jupyter_token,omitempty"`
	// Origin names the system that submitted the request ("gateway" for
	// the REST API, OriginStageData for the seed's /stage_data).
	Origin      string    `json:"origin,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
}

// OriginStageData is the origin of a request made through the seed's
// POST /stage_data. The stager keeps the seed's answer there: a file at the
// target that is evidently not the source is reported in the message of a
// success, not refused with target_conflict.
const OriginStageData = "stage_data"

// EventType is what happened to a request.
type EventType string

// The event types, in the order a request goes through them.
const (
	EventQueued    EventType = "queued"    // accepted and published as a command
	EventRejected  EventType = "rejected"  // refused before any work: bad input
	EventStarted   EventType = "started"   // a worker began
	EventResolved  EventType = "resolved"  // a DID was resolved into files on the site's storage
	EventProgress  EventType = "progress"  // a long staging moved forward
	EventSucceeded EventType = "succeeded" // staged, or already present
	EventFailed    EventType = "failed"    // staging failed and will not be retried
	EventCancelled EventType = "cancelled" // stopped, or never started, at someone's request
	EventExpired   EventType = "expired"   // the staged item's lifetime passed; the stager removed it
)

// Terminal reports whether no event follows t for the same request.
func (t EventType) Terminal() bool {
	return t == EventRejected || t == EventSucceeded || t == EventFailed || t == EventCancelled || t == EventExpired
}

// Status is the state of a request as the API and the audit report it.
type Status string

// The statuses.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusRejected  Status = "rejected"
	StatusCancelled Status = "cancelled"
	StatusExpired   Status = "expired"
)

// Status is the request status after an event of type t.
func (t EventType) Status() Status {
	switch t {
	case EventQueued:
		return StatusQueued
	case EventStarted, EventResolved, EventProgress:
		return StatusRunning
	case EventSucceeded:
		return StatusSucceeded
	case EventRejected:
		return StatusRejected
	case EventCancelled:
		return StatusCancelled
	case EventExpired:
		return StatusExpired
	default:
		return StatusFailed
	}
}

// Rank orders statuses so that state only moves forward: an event whose
// status ranks lower than the recorded one changes nothing.
func (s Status) Rank() int {
	switch s {
	case StatusQueued:
		return 1
	case StatusRunning:
		return 2
	case StatusSucceeded, StatusFailed, StatusRejected, StatusCancelled:
		return 3
	case StatusExpired:
		// Only a succeeded request expires: it follows that status.
		return 4
	default:
		return 0
	}
}

// Outcome says how a successful request was satisfied.
type Outcome string

// The outcomes.
const (
	OutcomeStaged         Outcome = "staged"          // the data was copied, linked or uploaded
	OutcomeAlreadyPresent Outcome = "already_present" // the target existed; nothing was touched
	OutcomeLinkIssued     Outcome = "link_issued"     // a download link was issued
)

// Progress reports how far a long staging has got.
type Progress struct {
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
}

// Resolved reports the files a request's DID was resolved into on the
// site's storage. A DID of many files is reported in several resolved
// events, parts 1 to Parts in order, each naming some of the files
// (ResolvedParts bounds them).
type Resolved struct {
	// Files and Bytes are the totals of the whole DID.
	Files int64 `json:"files"`
	Bytes int64 `json:"bytes"`
	// Part is this event's number among the Parts of the resolution, from 1.
	Part  int `json:"part"`
	Parts int `json:"parts"`
	// Paths are this part's files, relative to the storage root, in the
	// order Rucio listed them.
	Paths []string `json:"paths"`
}

// Event is one thing that happened to a request. Every event repeats the
// request's fields, so a reader of any one event (the audit, a dashboard)
// knows what request it is about. Published on EventSubject(RequestID) with
// Nats-Msg-Id set to ID.
type Event struct {
	SpecVersion string    `json:"spec_version"`
	ID          string    `json:"id"`
	Type        EventType `json:"type"`
	Time        time.Time `json:"time"`
	// Source names the service that published the event.
	Source string `json:"source"`

	RequestID          string `json:"request_id"`
	JobID              string `json:"job_id,omitempty"`
	JobSize            int    `json:"job_size,omitempty"`
	Method             Method `json:"method,omitempty"`
	Username           string `json:"username,omitempty"`
	LocalPathOnStorage string `json:"local_path_on_storage,omitempty"`
	DID                string `json:"did,omitempty"`
	RelativePath       string `json:"relative_path,omitempty"`
	Origin             string `json:"origin,omitempty"`
	ExpectedAdler32    string `json:"expected_adler32,omitempty"`
	TraceID            string `json:"trace_id,omitempty"`
	// ConflictsWith is set on the rejected event of a command that reused
	// the id of another request (id_conflict): the command is recorded
	// under a fresh RequestID, and this names the request it collided with.
	ConflictsWith string `json:"conflicts_with,omitempty"`
	// CancelledBy is set on a cancelled event: who asked for the cancel
	// (see CancelRequest).
	CancelledBy string `json:"cancelled_by,omitempty"`

	// Attempt is the delivery number of the command the event comes from.
	Attempt  int       `json:"attempt,omitempty"`
	Message  string    `json:"message,omitempty"`
	Outcome  Outcome   `json:"outcome,omitempty"`
	Error    *Error    `json:"error,omitempty"`
	Progress *Progress `json:"progress,omitempty"`
	Resolved *Resolved `json:"resolved,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"`
	Files    int64     `json:"files,omitempty"`
	Adler32  string    `json:"adler32,omitempty"`
	// DownloadURL is the path of an issued download link (direct_download).
	DownloadURL string `json:"download_url,omitempty"`
	// ExpiresAt is when the staged item is removed (succeeded and
	// expired events; absent: kept for ever), or when the download link
	// ends (direct_download).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// EventFor starts an event of type t about cmd, copying the request fields.
// The caller sets ID, Time, Source and the type-specific fields. A field
// longer than events allow (refused input, repeated by a rejected event) is
// cut to fit, so that the rejection is recorded rather than refused in turn.
func EventFor(cmd Command, t EventType) Event {
	return Event{
		SpecVersion:        SpecVersion,
		Type:               t,
		RequestID:          cmd.ID,
		JobID:              cut(cmd.JobID, MaxIDLen),
		JobSize:            max(cmd.JobSize, 0),
		Method:             Method(cut(string(cmd.Method), maxEventMethodLen)),
		Username:           cut(cmd.Username, maxEventUsernameLen),
		LocalPathOnStorage: cut(cmd.LocalPathOnStorage, MaxPathLen),
		DID:                cut(cmd.DID, MaxDIDLen),
		RelativePath:       cut(cmd.RelativePath, MaxPathLen),
		Origin:             cut(cmd.Origin, MaxEventNameLen),
		// Only a well-formed checksum: a command refused for its
		// checksum is recorded without it.
		ExpectedAdler32: validAdler32(cmd.ExpectedAdler32),
	}
}

// EventAfter starts an event of type t about the request last is an event
// of, repeating the request fields of last (those EventFor copies from a
// command). The caller sets ID, Time, Source and the type-specific fields.
func EventAfter(last Event, t EventType) Event {
	return Event{
		SpecVersion: SpecVersion, Type: t,
		RequestID: last.RequestID, JobID: last.JobID, JobSize: last.JobSize, Method: last.Method, Username: last.Username,
		LocalPathOnStorage: last.LocalPathOnStorage, DID: last.DID, RelativePath: last.RelativePath,
		Origin: last.Origin, ExpectedAdler32: last.ExpectedAdler32, TraceID: last.TraceID,
	}
}

func validAdler32(s string) string {
	if !adler32RE.MatchString(s) {
		return ""
	}
	return s
}

// SameRequest reports whether ev is about the request cmd asks for: every
// request field EventFor copies is equal. A command that reuses the id of a
// request with other fields is another request (id_conflict); one with the
// same fields repeats it. The jupyter_token is not compared: it is never in
// an event, and it may be renewed between two copies of one request. Nor is
// the expected checksum or the job size when ev has none: events published
// before they carried them would otherwise turn the redelivery of a request begun before
// an upgrade into a conflict.
func SameRequest(cmd Command, ev Event) bool {
	want := EventFor(cmd, ev.Type)
	return ev.RequestID == want.RequestID && ev.JobID == want.JobID && ev.Method == want.Method &&
		ev.Username == want.Username && ev.LocalPathOnStorage == want.LocalPathOnStorage &&
		ev.DID == want.DID &&
		ev.RelativePath == want.RelativePath && ev.Origin == want.Origin &&
		(ev.ExpectedAdler32 == "" || ev.ExpectedAdler32 == want.ExpectedAdler32) &&
		(ev.JobSize == 0 || ev.JobSize == want.JobSize)
}
