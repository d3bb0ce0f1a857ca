package contract

import "time"

// DownloadEventType is what happened to one download through a
// direct_download link.
type DownloadEventType string

// The download event types. Every download that starts ends with exactly one
// of download_completed or download_failed (unless the stager itself dies).
const (
	DownloadStarted   DownloadEventType = "download_started"   // the link was accepted and the body is being sent
	DownloadCompleted DownloadEventType = "download_completed" // the whole body was sent
	DownloadFailed    DownloadEventType = "download_failed"    // the body was cut short: client gone, read error
)

// DownloadEvent is one download's start or end through the link issued for
// a direct_download request. Published on DownloadSubject(RequestID), in the
// STAGING_EVENTS stream, with Nats-Msg-Id set to ID. A download changes no
// request's status: the request ended when its link was issued.
//
// It carries no client address or user agent: the audit keeps its records
// indefinitely, and who fetched a link from where is access-log material
// with its own retention.
type DownloadEvent struct {
	SpecVersion string            `json:"spec_version"`
	ID          string            `json:"id"`
	Type        DownloadEventType `json:"type"`
	Time        time.Time         `json:"time"`
	// Source names the service that served the download.
	Source string `json:"source"`

	RequestID string `json:"request_id"`
	// DownloadID is shared by the start and the end of one download (one
	// HTTP GET), so concurrent downloads of a link can be told apart.
	DownloadID         string `json:"download_id"`
	Username           string `json:"username,omitempty"`
	LocalPathOnStorage string `json:"local_path_on_storage,omitempty"`
	// DID is the Rucio DID whose files the link serves (a dataset or a
	// container, as one tar archive); a link to a path, or to a file DID's
	// file, has LocalPathOnStorage instead.
	DID string `json:"did,omitempty"`
	// TraceID is the trace of the request the link was issued for.
	TraceID string `json:"trace_id,omitempty"`

	// Size is the length of the body to send (download_started), absent
	// when not known in advance (a directory, streamed as a tar archive).
	Size int64 `json:"size,omitempty"`
	// Bytes is the body bytes sent: 0 on download_started.
	Bytes int64 `json:"bytes"`
	// Range is the byte ranges sent when the response is partial (206),
	// normalised from the client's Range header (absolute first-last
	// positions, at most 16 ranges, so bounded); absent when the whole
	// item is sent.
	Range string `json:"range,omitempty"`
	Error *Error `json:"error,omitempty"`
}
