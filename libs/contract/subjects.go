package contract

import (
	"strings"
	"time"
)

// Stream names.
const (
	// StreamRequests holds staging commands as a work queue: each command is
	// delivered to exactly one worker and removed once acknowledged.
	StreamRequests = "STAGING_REQUESTS"
	// StreamEvents holds every event of every request, kept for a
	// configurable age. The last message on a request's subject is its
	// current state. It also holds the download events of direct_download
	// links, on subjects of their own so that they never become a
	// request's state.
	StreamEvents = "STAGING_EVENTS"
	// StreamCancels holds the cancel requests (CancelRequest), the last
	// one per request, for as long as a command may wait in
	// STAGING_REQUESTS: a worker that takes a command later, or takes it
	// again after a restart, finds the cancel there. Apart from
	// STAGING_EVENTS, so a cancel request never becomes a request's state.
	StreamCancels = "STAGING_CANCELS"
)

// Subject prefixes and the audit query subjects.
const (
	subjectRequestsPrefix = "staging.requests."
	subjectEventsPrefix   = "staging.events."
	subjectDownloadPrefix = "staging.downloads."
	subjectCancelPrefix   = "staging.cancel."

	// SubjectCancelAll matches the cancel requests of every request.
	SubjectCancelAll = subjectCancelPrefix + ">"

	// SubjectRequestsAll matches the commands of every method.
	SubjectRequestsAll = subjectRequestsPrefix + ">"
	// SubjectEventsAll matches the events of every request.
	SubjectEventsAll = subjectEventsPrefix + ">"
	// SubjectDownloadsAll matches the download events of every request.
	SubjectDownloadsAll = subjectDownloadPrefix + ">"

	// SubjectAuditGet answers one request's record and events (request/reply).
	SubjectAuditGet = "staging.audit.get"
	// SubjectAuditList answers a filtered, paged list of records (request/reply).
	SubjectAuditList = "staging.audit.list"
	// SubjectAuditInvalid answers a paged list of the messages the audit
	// refused to record as events (request/reply).
	SubjectAuditInvalid = "staging.audit.invalid"

	// SubjectLogsAll matches the log records of every service (core NATS,
	// no stream: a record nobody listens to is gone).
	SubjectLogsAll    = subjectLogsPrefix + ">"
	subjectLogsPrefix = "staging.logs."
)

// LogSubject is the subject service publishes its JSON log records on.
func LogSubject(service string) string { return subjectLogsPrefix + service }

// Durable consumer names.
const (
	ConsumerStager        = "stager"
	ConsumerJupyterBridge = "jupyter-bridge"
	ConsumerAudit         = "audit"
)

// DedupWindow is how long JetStream remembers a Nats-Msg-Id on
// STAGING_REQUESTS: a command re-published with the same request id within it
// is dropped, so a retrying client never stages twice.
const DedupWindow = 20 * time.Minute

// DefaultEventsMaxAge is how long STAGING_EVENTS keeps events unless
// configured otherwise. The audit database is the permanent record.
const DefaultEventsMaxAge = 30 * 24 * time.Hour

// The default bounds of STAGING_REQUESTS. Commands are taken within
// moments while a worker runs; the bounds only matter when none does, and
// then a week of waiting or a hundred thousand waiting commands is where a
// publisher should be told to stop rather than fill the disk.
const (
	DefaultRequestsMaxAge   = 7 * 24 * time.Hour
	DefaultRequestsMaxMsgs  = 100_000
	DefaultRequestsMaxBytes = 1 << 30
)

// RequestSubject is the subject a command for method m is published on.
func RequestSubject(m Method) string { return subjectRequestsPrefix + string(m) }

// RequestSubjects lists the command subjects of the given methods.
func RequestSubjects(methods ...Method) []string {
	subjects := make([]string, len(methods))
	for i, m := range methods {
		subjects[i] = RequestSubject(m)
	}
	return subjects
}

// EventSubject is the subject every event of request id is published on.
func EventSubject(requestID string) string { return subjectEventsPrefix + requestID }

// DownloadSubject is the subject the download events of request id's link
// are published on. It is not EventSubject(id): the last message there is
// the request's state, which a download does not change.
func DownloadSubject(requestID string) string { return subjectDownloadPrefix + requestID }

// IsDownloadSubject reports whether subject carries download events.
func IsDownloadSubject(subject string) bool { return strings.HasPrefix(subject, subjectDownloadPrefix) }

// CancelSubject is the subject a CancelRequest for request id is
// published on.
func CancelSubject(requestID string) string { return subjectCancelPrefix + requestID }

// CancelledRequestID is the request id of a cancel subject, "" for any
// other subject.
func CancelledRequestID(subject string) string {
	id, ok := strings.CutPrefix(subject, subjectCancelPrefix)
	if !ok {
		return ""
	}
	return id
}
