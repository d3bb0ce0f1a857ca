package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"time"
)

// StreamExpiries holds the expiry schedule of staged items: one JetStream
// message schedule per item (ExpiryScheduleSubject), which the server
// publishes on the item's due subject (ExpiryDueSubject) when its time
// comes, for the stager to remove the item. A schedule lives in the stream,
// not in a process, so it outlives restarts of the stager and of NATS, and
// the due message goes to one stager of many.
const StreamExpiries = "STAGING_EXPIRIES"

// ConsumerExpiries is the stagers' durable consumer of due expiries.
const ConsumerExpiries = "stager-expiries"

const (
	subjectExpirySchedulePrefix = "staging.expiry.schedule."
	subjectExpiryDuePrefix      = "staging.expiry.due."

	// SubjectExpirySchedules matches the schedule of every item.
	SubjectExpirySchedules = subjectExpirySchedulePrefix + ">"
	// SubjectExpiriesDue matches the due expiries of every item.
	SubjectExpiriesDue = subjectExpiryDuePrefix + ">"
)

// ExpiryKey names the staged item relativePath of username in the expiry
// subjects: the username (a subject token by its rules) and a digest of the
// cleaned path, so that every request staging the same item shares one
// schedule, and a later one replaces it.
func ExpiryKey(username, relativePath string) string {
	sum := sha256.Sum256([]byte(path.Clean(relativePath)))
	return username + "." + hex.EncodeToString(sum[:16])
}

// ExpiryScheduleSubject is the subject of the schedule of the item key.
func ExpiryScheduleSubject(key string) string { return subjectExpirySchedulePrefix + key }

// ExpiryDueSubject is the subject the schedule of the item key fires on.
func ExpiryDueSubject(key string) string { return subjectExpiryDuePrefix + key }

// Expiry is the body of an item's schedule and of its due message: what
// the stager staged, when it goes, and the requests that staged it.
type Expiry struct {
	SpecVersion  string    `json:"spec_version"`
	Username     string    `json:"username"`
	RelativePath string    `json:"relative_path"`
	ExpiresAt    time.Time `json:"expires_at"`
	// RequestIDs are the requests whose expired event the removal
	// publishes: the one that staged the item and those that staged it
	// again (already_present) before it expired, at most MaxExpiryRequests.
	RequestIDs []string `json:"request_ids"`
	// Staged is what the stager left at the target, so that only that is
	// removed.
	Staged StagedItem `json:"staged"`
}

// MaxExpiryRequests bounds the requests one schedule names; the oldest
// are dropped first.
const MaxExpiryRequests = 100

// StagedItem describes the entry the stager left at a target.
type StagedItem struct {
	// Type is "file", "dir" or "symlink".
	Type  string `json:"type"`
	Size  int64  `json:"size,omitempty"`
	Inode uint64 `json:"inode,omitempty"`
	// ModTime is a file's modification time in nanoseconds since 1970.
	ModTime int64 `json:"mtime,omitempty"`
	// LinkTarget is a symlink's target.
	LinkTarget string `json:"link_target,omitempty"`
}

// Expired is the expired event of the request whose last event is last,
// an item due at due. It repeats the request's fields from last. The
// caller sets ID, Time, Source and Message.
func Expired(last Event, due time.Time) Event {
	ev := EventAfter(last, EventExpired)
	ev.Attempt, ev.ExpiresAt = last.Attempt, &due
	// The staging's results stand: the state after expired still tells
	// what was staged.
	ev.Outcome, ev.Bytes, ev.Files, ev.Adler32 = last.Outcome, last.Bytes, last.Files, last.Adler32
	return ev
}
