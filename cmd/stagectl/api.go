package main

import "time"

// The shapes below are the gateway's documented JSON (openapi.json), kept
// here rather than imported: the client depends on the API, not on the
// server's code, and installs on its own with go install.

// apiError is the gateway's error body: a stable code and a human detail.
type apiError struct {
	Code      string `json:"code"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id,omitempty"`
	// ID and StatusURL are set when the refused request was recorded.
	ID        string `json:"id,omitempty"`
	StatusURL string `json:"status_url,omitempty"`
}

// progress is how far a running request has got.
type progress struct {
	BytesDone  int64 `json:"bytes_done"`
	BytesTotal int64 `json:"bytes_total"`
	FilesDone  int64 `json:"files_done"`
	FilesTotal int64 `json:"files_total"`
}

// staging is a request's state (GET /api/v1/stagings/{id}); events carry
// the same fields, so one type reads both.
type staging struct {
	ID                 string    `json:"id"`
	JobID              string    `json:"job_id,omitempty"`
	Status             string    `json:"status"`
	Method             string    `json:"method"`
	Username           string    `json:"username"`
	LocalPathOnStorage string    `json:"local_path_on_storage"`
	DID                string    `json:"did,omitempty"`
	RelativePath       string    `json:"relative_path"`
	Outcome            string    `json:"outcome,omitempty"`
	Message            string    `json:"message,omitempty"`
	Error              *apiError `json:"error,omitempty"`
	Progress           *progress `json:"progress,omitempty"`
	Bytes              int64     `json:"bytes"`
	Files              int64     `json:"files"`
	Adler32            string    `json:"adler32,omitempty"`
	DownloadURL        string    `json:"download_url,omitempty"`
	// ExpiresAt is when the staged copy or link expires, on servers that
	// report it (request lifetimes).
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// finished reports whether no event follows for the request. A status
// this client does not know (cancelled, say, from a newer server) is taken
// as an end: the statuses of a request still going are few and old.
func (s staging) finished() bool {
	switch s.Status {
	case "", "waiting", "queued", "running":
		return false
	}
	return true
}

// event is one SSE event of a request's stream. Its data is a staging
// event: the request's fields plus type, time and progress.
type event struct {
	staging
	Type      string    `json:"type"`
	RequestID string    `json:"request_id"`
	Time      time.Time `json:"time"`
}

// record is one row of the audit history (GET /api/v1/stagings).
type record struct {
	ID                 string     `json:"id"`
	JobID              string     `json:"job_id,omitempty"`
	Method             string     `json:"method"`
	Username           string     `json:"username"`
	LocalPathOnStorage string     `json:"local_path_on_storage"`
	DID                string     `json:"did,omitempty"`
	RelativePath       string     `json:"relative_path"`
	Status             string     `json:"status"`
	Outcome            string     `json:"outcome,omitempty"`
	ErrorCode          string     `json:"error_code,omitempty"`
	ErrorReason        string     `json:"error_reason,omitempty"`
	Bytes              int64      `json:"bytes"`
	Files              int64      `json:"files"`
	Adler32            string     `json:"adler32,omitempty"`
	Downloads          int64      `json:"downloads,omitempty"`
	CreatedAt          time.Time  `json:"created_at"`
	FinishedAt         *time.Time `json:"finished_at,omitempty"`
	// ExpiresAt is when the staged copy or link expires (once expired,
	// when it was due), on servers that record it.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

type recordPage struct {
	Items      []record `json:"items"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// item is one item to stage: the body of POST /api/v1/stagings and an
// element of a job's items.
type item struct {
	Method   string `json:"method"`
	Username string `json:"username"`
	// The source: a path on the site's storage or, instead, a Rucio DID
	// (scope:name); the server takes exactly one of the two.
	LocalPathOnStorage string `json:"local_path_on_storage,omitempty"`
	DID                string `json:"did,omitempty"`
	RelativePath       string `json:"relative_path"`
	ExpectedAdler32    string `json:"expected_adler32,omitempty"`
	// Lifetime (seconds) is sent only when asked for: servers without
	// request lifetimes do not know the field.
	Lifetime int64 `json:"lifetime,omitempty"`
}

type submitted struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	StatusURL string `json:"status_url"`
}

type jobItem struct {
	ID     string    `json:"id"`
	Status string    `json:"status"`
	Error  *apiError `json:"error,omitempty"`
}

type jobSubmitted struct {
	JobID     string    `json:"job_id"`
	StatusURL string    `json:"status_url"`
	Items     []jobItem `json:"items"`
	// Replayed is set by the client when the server answered a repeated
	// Idempotency-Key with the first submission's job.
	Replayed bool `json:"replayed,omitempty"`
}

type job struct {
	JobID  string         `json:"job_id"`
	Status string         `json:"status"`
	Counts map[string]int `json:"counts"`
	Items  []staging      `json:"items"`
}
