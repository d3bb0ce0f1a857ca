package auditstore

import (
	"time"

	"github.com/skao/skao-staging/libs/contract"
)

// merge folds ev into the record r of its request (exists is false for a
// request seen for the first time). It is written so that the result does
// not depend on the order events arrive in, as far as the events allow:
//   - the status only moves up in rank: a late started never undoes a
//     terminal status, and the first terminal event recorded stands;
//   - the request's fields fill in where still empty, so whichever event
//     comes first (a started event of a directly published command, say)
//     creates a complete row;
//   - created_at and started_at keep the earliest time seen, updated_at the
//     latest;
//   - finished_at and the results come from the terminal event that set the
//     status; expired, which follows succeeded, changes only the status and
//     expires_at: the succeeded event's expires_at is when the item was to
//     be removed, the expired event's when it was due at last (staging the
//     same item again may have put it later), which stands whichever of
//     the two is applied first.
//
// An event of a type this version does not know is kept in the history but
// changes no status (the recorder sets such events apart before they get
// here; the store does not rely on it).
func merge(r contract.Record, exists bool, ev contract.Event) contract.Record {
	t := toDB(ev.Time)
	if !exists {
		r = contract.Record{ID: ev.RequestID, CreatedAt: t, UpdatedAt: t}
	}
	fill(&r.JobID, clip(ev.JobID, maxShort))
	if r.Method == "" {
		r.Method = contract.Method(clip(string(ev.Method), maxWord))
	}
	fill(&r.Username, clip(ev.Username, maxShort))
	fill(&r.LocalPathOnStorage, clip(ev.LocalPathOnStorage, maxText))
	fill(&r.DID, clip(ev.DID, maxDID))
	fill(&r.RelativePath, clip(ev.RelativePath, maxText))
	fill(&r.Origin, clip(ev.Origin, maxName))
	fill(&r.TraceID, clip(ev.TraceID, maxWord))
	if t.Before(r.CreatedAt) {
		r.CreatedAt = t
	}
	if t.After(r.UpdatedAt) {
		r.UpdatedAt = t
	}
	if !knownType(ev.Type) {
		return r
	}
	if ev.Type == contract.EventStarted && (r.StartedAt == nil || t.Before(*r.StartedAt)) {
		r.StartedAt = timePtr(t)
	}
	status := ev.Type.Status()
	if status.Rank() <= r.Status.Rank() {
		if ev.Type == contract.EventSucceeded && r.Status == contract.StatusExpired {
			// The expired event came first: the results are still the
			// staging's.
			finish(&r, ev, t)
		}
		return r
	}
	r.Status = status
	if ev.Type == contract.EventExpired {
		// The staging's end and results stand; expired only says the item
		// is gone since, and when it was due.
		r.ExpiresAt = dbTimePtr(ev.ExpiresAt)
		return r
	}
	if ev.Type.Terminal() {
		finish(&r, ev, t)
	}
	return r
}

// finish sets the end and the results of r from ev, its terminal event.
func finish(r *contract.Record, ev contract.Event, t time.Time) {
	r.FinishedAt = timePtr(t)
	r.Outcome = contract.Outcome(clip(string(ev.Outcome), maxWord))
	r.Bytes, r.Files = ev.Bytes, ev.Files
	r.Adler32 = clip(ev.Adler32, maxChecksum)
	if r.Status != contract.StatusExpired {
		// Once expired, the due time of the expired event stands.
		r.ExpiresAt = dbTimePtr(ev.ExpiresAt)
	}
	if ev.Error != nil {
		r.ErrorCode = contract.Code(clip(string(ev.Error.Code), maxShort))
		r.ErrorReason = clip(ev.Error.Detail, maxText)
	}
}

func fill(field *string, v string) {
	if *field == "" {
		*field = v
	}
}

func timePtr(t time.Time) *time.Time { return &t }

// dbTimePtr is *t as stored (nil for nil).
func dbTimePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	return timePtr(toDB(*t))
}

func knownType(t contract.EventType) bool {
	switch t {
	case contract.EventQueued, contract.EventRejected, contract.EventStarted, contract.EventResolved,
		contract.EventProgress, contract.EventSucceeded, contract.EventFailed, contract.EventCancelled,
		contract.EventExpired:
		return true
	}
	return false
}
