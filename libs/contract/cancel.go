package contract

import (
	"time"
	"unicode/utf8"
)

// CancelRequest asks for a request to be cancelled. Anyone allowed to
// publish on CancelSubject(RequestID) may send one (the gateway does for
// DELETE /api/v1/stagings/{id}); it is stored in StreamCancels with
// Nats-Msg-Id set to ID. What follows is told by the request's events: a
// cancelled event (at once for a queued request, within about a second for
// a running one), or nothing when the request had already ended.
type CancelRequest struct {
	SpecVersion string    `json:"spec_version"`
	ID          string    `json:"id"`
	Time        time.Time `json:"time"`
	RequestID   string    `json:"request_id"`
	// CancelledBy names who asked: a username, or the name of a system.
	// The cancelled event and the audit record repeat it.
	CancelledBy string `json:"cancelled_by"`
	// Origin names the system the cancel came through ("gateway").
	Origin string `json:"origin,omitempty"`
}

// Validate checks the cancel request against the rules of
// docs/messages.md (cancel.schema.json says the same).
func (c CancelRequest) Validate() error {
	// A cancel request names who sent it in cancelled_by, not in a
	// source, and carries no trace.
	if err := checkEnvelope(c.SpecVersion, c.ID, c.Time, "-", c.RequestID, ""); err != nil {
		return err
	}
	switch {
	case c.CancelledBy == "":
		return Errorf(CodeMissingField, "cancelled_by is required")
	case utf8.RuneCountInString(c.CancelledBy) > MaxEventNameLen:
		return Errorf(CodeMalformed, "cancelled_by is longer than %d characters", MaxEventNameLen)
	}
	return checkText("origin", c.Origin, MaxEventNameLen)
}

// CheckSubject reports a subject_mismatch error unless subject is the
// cancel subject of the request named.
func (c CancelRequest) CheckSubject(subject string) error {
	if subject != CancelSubject(c.RequestID) {
		return Errorf(CodeSubjectMismatch, "a cancel of request %s must be published on %s, not %s", c.RequestID, CancelSubject(c.RequestID), cut(subject, 256))
	}
	return nil
}

// DecodeCancelRequest decodes and checks a cancel request that came on
// subject.
func DecodeCancelRequest(subject string, data []byte) (CancelRequest, error) {
	var c CancelRequest
	if err := decodeEventJSON(data, &c); err != nil {
		return CancelRequest{}, err
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, c.CheckSubject(subject)
}

// Cancelled is the cancelled event ending the request whose last event is
// last, at the request of c. It repeats the request's fields from last.
// The caller sets ID, Time and Source.
func Cancelled(last Event, c CancelRequest) Event {
	ev := EventAfter(last, EventCancelled)
	ev.Attempt, ev.CancelledBy = last.Attempt, c.CancelledBy
	ev.Error = Errorf(CodeCancelled, "cancelled by %s", c.CancelledBy)
	return ev
}
