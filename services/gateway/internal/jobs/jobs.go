// Package jobs is what the gateway knows of batch jobs: a job is N
// commands sharing a job id, and holds no state of its own. Item ids are
// derived from the job id, so the items of a job can be found on the event
// stream without any record of the job, and its overall state is computed
// from its items' states.
package jobs

import (
	"strconv"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/contract"
)

// State is a job's overall state.
type State string

// The job states.
const (
	// Running: some item has not finished yet.
	Running State = "running"
	// Completed: every item succeeded.
	Completed State = "completed"
	// Partial: every item finished, some succeeded and some did not.
	Partial State = "partial"
	// Failed: every item finished and none succeeded.
	Failed State = "failed"
	// Cancelled: every item was cancelled.
	Cancelled State = "cancelled"
	// Incomplete: some items were never published (a submission cut
	// short); repeating it with the same Idempotency-Key completes it.
	Incomplete State = "incomplete"
)

// namespace scopes the derived item ids (a fixed, random UUID).
var namespace = uuid.MustParse("0e5b8c61-7d1f-4a8e-b2f4-3c9a6d0e1f27")

// ItemID is the id of item n (from 0) of job jobID.
func ItemID(jobID string, n int) string {
	return uuid.NewSHA1(namespace, []byte(jobID+"\x00"+strconv.Itoa(n))).String()
}

// Overall is the state of a job whose items are in statuses.
func Overall(statuses []contract.Status) State {
	succeeded, cancelled, finished := 0, 0, 0
	for _, s := range statuses {
		if s.Rank() >= contract.StatusSucceeded.Rank() {
			finished++
			switch s {
			case contract.StatusSucceeded, contract.StatusExpired:
				// An expired item was staged, and kept its time.
				succeeded++
			case contract.StatusCancelled:
				cancelled++
			}
		}
	}
	switch {
	case len(statuses) == 0 || finished < len(statuses):
		return Running
	case succeeded == len(statuses):
		return Completed
	case cancelled == len(statuses):
		return Cancelled
	case succeeded == 0:
		return Failed
	default:
		return Partial
	}
}
