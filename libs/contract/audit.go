package contract

import "time"

// Record is the audit's permanent row for one request.
type Record struct {
	ID                 string `json:"id"`
	JobID              string `json:"job_id,omitempty"`
	Method             Method `json:"method"`
	Username           string `json:"username"`
	LocalPathOnStorage string `json:"local_path_on_storage"`
	// DID is the source of a request by DID (then LocalPathOnStorage is
	// empty); the files it was resolved into are in its resolved events.
	DID          string  `json:"did,omitempty"`
	RelativePath string  `json:"relative_path"`
	Status       Status  `json:"status"`
	Outcome      Outcome `json:"outcome,omitempty"`
	ErrorCode    Code    `json:"error_code,omitempty"`
	ErrorReason  string  `json:"error_reason,omitempty"`
	Bytes        int64   `json:"bytes"`
	Files        int64   `json:"files"`
	Adler32      string  `json:"adler32,omitempty"`
	Origin       string  `json:"origin,omitempty"`
	TraceID      string  `json:"trace_id,omitempty"`
	// Downloads counts the completed downloads through the request's
	// direct_download link (download_completed events); absent when none.
	Downloads  int64      `json:"downloads,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// ExpiresAt is when the staged item is removed, or when the
	// direct_download link ends: the expires_at of the request's
	// succeeded event, and once it expired, of its expired event (when it
	// was due). Absent: kept for ever, or not staged.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// AuditGetRequest asks the audit for one request (on SubjectAuditGet).
type AuditGetRequest struct {
	ID string `json:"id"`
	// WithEvents asks for the request's event history and download
	// events too.
	WithEvents bool `json:"with_events,omitempty"`
}

// AuditGetReply answers an AuditGetRequest. Error is set instead of Record
// when the request is unknown (code not_found) or the query failed.
type AuditGetReply struct {
	Record *Record `json:"record,omitempty"`
	Events []Event `json:"events,omitempty"`
	// Downloads is the history of the request's download link, in time
	// order (with WithEvents). Kept apart from Events, whose types are the
	// request's own and whose last one is its state.
	Downloads []DownloadEvent `json:"downloads,omitempty"`
	// ResolvedPathsOmitted says that the reply, too large for one NATS
	// message (the resolution of a DID of many thousand files), holds the
	// resolved events without their paths; their totals and parts stand,
	// and the audit's database and the event stream keep the paths.
	ResolvedPathsOmitted bool   `json:"resolved_paths_omitted,omitempty"`
	Error                *Error `json:"error,omitempty"`
}

// AuditListRequest asks for records matching every non-empty filter, newest
// first (on SubjectAuditList).
type AuditListRequest struct {
	Username string    `json:"username,omitempty"`
	Status   Status    `json:"status,omitempty"`
	Method   Method    `json:"method,omitempty"`
	JobID    string    `json:"job_id,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Until    time.Time `json:"until,omitzero"`
	// Limit caps the page size (default 50, at most 500).
	Limit int `json:"limit,omitempty"`
	// Cursor continues a previous listing: its NextCursor.
	Cursor string `json:"cursor,omitempty"`
}

// AuditListReply answers an AuditListRequest. NextCursor is empty on the
// last page.
type AuditListReply struct {
	Items      []Record `json:"items"`
	NextCursor string   `json:"next_cursor,omitempty"`
	Error      *Error   `json:"error,omitempty"`
}

// InvalidEvent is a message on STAGING_EVENTS the audit refused to record
// because it breaks the event rules (Event.Validate): kept apart from the
// records, for inspection.
type InvalidEvent struct {
	// ID is the audit's own number for it, newest highest.
	ID        int64  `json:"id"`
	Subject   string `json:"subject"`
	StreamSeq uint64 `json:"stream_seq"`
	// Code and Reason say which rule the message breaks.
	Code   Code   `json:"code"`
	Reason string `json:"reason"`
	// Size is the message's length in bytes; Payload is the message as
	// received, its first 64 KiB (Truncated when there was more), with any
	// bytes that are not UTF-8 replaced by U+FFFD.
	Size        int64     `json:"size"`
	Payload     string    `json:"payload"`
	Truncated   bool      `json:"truncated,omitempty"`
	PublishedAt time.Time `json:"published_at"`
	ReceivedAt  time.Time `json:"received_at"`
}

// AuditInvalidRequest asks for the invalid events, newest first (on
// SubjectAuditInvalid).
type AuditInvalidRequest struct {
	// Limit caps the page size (default 50, at most 500).
	Limit int `json:"limit,omitempty"`
	// Cursor continues a previous listing: its NextCursor.
	Cursor string `json:"cursor,omitempty"`
}

// AuditInvalidReply answers an AuditInvalidRequest. NextCursor is empty on
// the last page.
type AuditInvalidReply struct {
	Items      []InvalidEvent `json:"items"`
	NextCursor string         `json:"next_cursor,omitempty"`
	Error      *Error         `json:"error,omitempty"`
}
