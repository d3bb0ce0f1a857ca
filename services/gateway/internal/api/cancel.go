package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/jobs"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// cancelWait is how long DELETE /api/v1/stagings/{id} waits for the
// request to end before it answers 202: a queued request ends at once, a
// running one within about a second.
const cancelWait = 3 * time.Second

// cancel is DELETE /api/v1/stagings/{id}: read the request, authorize,
// refuse an ended one (409 already_finished), publish the cancel request,
// wait briefly for the request to end. 200 with the cancelled state, or
// 202 with the state it is still in.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	state, err := s.client.Get(ctx, mux.Vars(r)["id"])
	if err != nil {
		s.logFault(r, "get_failed", err)
		writeError(w, r, err)
		return
	}
	// As for GET: a 403 would confirm that the id exists.
	if mayActFor(ctx, state.Username) != nil {
		writeError(w, r, contract.Errorf(contract.CodeNotFound, "no staging request with id %s", state.ID))
		return
	}
	if ended(state.Status) {
		writeError(w, r, alreadyFinished(state))
		return
	}
	// Before the cancel, so that the cancelled event cannot be missed.
	watch, ok := s.watch(w, r, state.ID)
	if !ok {
		return
	}
	defer s.unwatch(r, watch, state.ID)
	if err := s.client.Cancel(ctx, state.ID, canceller(ctx)); err != nil {
		s.logFault(r, "cancel_failed", err)
		writeError(w, r, err)
		return
	}
	wctx, stop := context.WithTimeout(ctx, cancelWait)
	defer stop()
	ev, err := watch.Outcome(wctx)
	switch {
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		writeJSON(w, http.StatusAccepted, state)
	case err != nil:
		writeError(w, r, err)
	case ev.Type != contract.EventCancelled:
		// It ended some other way before the cancel reached it.
		writeError(w, r, alreadyFinished(stagings.StateFromEvent(ev)))
	default:
		writeJSON(w, http.StatusOK, stagings.StateFromEvent(ev))
	}
}

// jobCancelled answers DELETE /api/v1/jobs/{job_id}.
type jobCancelled struct {
	JobID string `json:"job_id"`
	// Cancelling counts the items a cancel was sent for; Finished those
	// that had already ended and are left as they were.
	Cancelling int `json:"cancelling"`
	Finished   int `json:"finished"`
}

// cancelJob is DELETE /api/v1/jobs/{job_id}: a cancel request for every
// item of the job the caller may act for that has not ended. 202, or 409
// already_finished when every item has ended.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	jobID := mux.Vars(r)["job_id"]
	if err := contract.ValidateID("job_id", jobID); err != nil {
		writeError(w, r, err)
		return
	}
	out := jobCancelled{JobID: jobID}
	for i := range s.cfg.JobMaxItems {
		state, found, err := s.client.LastState(ctx, jobs.ItemID(jobID, i))
		if err != nil {
			s.logFault(r, "job_item_state_failed", err)
			writeError(w, r, err)
			return
		}
		if !found {
			break
		}
		switch {
		case mayActFor(ctx, state.Username) != nil:
		case ended(state.Status):
			out.Finished++
		default:
			if err := s.client.Cancel(ctx, state.ID, canceller(ctx)); err != nil {
				s.logFault(r, "cancel_failed", err)
				writeError(w, r, err)
				return
			}
			out.Cancelling++
		}
	}
	switch {
	case out.Cancelling == 0 && out.Finished == 0:
		writeError(w, r, contract.Errorf(contract.CodeNotFound, "no job with id %s", jobID))
	case out.Cancelling == 0:
		writeError(w, r, contract.Errorf(contract.CodeAlreadyFinished, "every item of job %s has already ended", jobID))
	default:
		writeJSON(w, http.StatusAccepted, out)
	}
}

func ended(s contract.Status) bool { return s.Rank() >= contract.StatusSucceeded.Rank() }

func alreadyFinished(state stagings.State) error {
	return contract.Errorf(contract.CodeAlreadyFinished, "request %s has already ended: %s", state.ID, state.Status)
}

// canceller names the caller in the cancel request: the authenticated
// user, or "anonymous" with authentication off.
func canceller(ctx context.Context) string {
	if user, _ := caller(ctx); user != "" {
		return user
	}
	return "anonymous"
}
