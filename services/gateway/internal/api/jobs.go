package api

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/jobs"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// jobState is GET /api/v1/jobs/{job_id}.
type jobState struct {
	JobID  string           `json:"job_id"`
	Status jobs.State       `json:"status"`
	Counts map[string]int   `json:"counts"`
	Items  []stagings.State `json:"items"`
}

// getJob reports a job's items and overall state. The audit lists the
// job's records; an item the audit has not finished (or not yet recorded)
// is read from its last event, which is newer. Item ids derive from the
// job id, so items are found on the event stream even before the audit
// has them.
func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	jobID := mux.Vars(r)["job_id"]
	if err := contract.ValidateID("job_id", jobID); err != nil {
		writeError(w, r, err)
		return
	}
	user, privileged := caller(r.Context())
	q := contract.AuditListRequest{JobID: jobID, Limit: 500}
	if !privileged {
		q.Username = user
	}
	recorded := map[string]stagings.State{}
	for range s.cfg.JobMaxItems/q.Limit + 1 {
		reply, err := s.client.List(r.Context(), q)
		if err != nil {
			// The event stream may still know the job.
			s.log.WarnContext(r.Context(), "job_audit_list_failed", "job_id", jobID, "error", err)
			break
		}
		for _, rec := range reply.Items {
			recorded[rec.ID] = stagings.StateFromRecord(rec)
		}
		if reply.NextCursor == "" {
			break
		}
		q.Cursor = reply.NextCursor
	}

	var items []stagings.State
	for i := range s.cfg.JobMaxItems {
		id := jobs.ItemID(jobID, i)
		st, inAudit := recorded[id]
		if !inAudit || st.Status.Rank() < contract.StatusSucceeded.Rank() {
			last, found, err := s.client.LastState(r.Context(), id)
			if err != nil {
				s.logFault(r, "job_item_state_failed", err)
				writeError(w, r, err)
				return
			}
			if !found && !inAudit {
				break
			}
			if found && (!privileged && last.Username != user) {
				continue
			}
			if found && last.Status.Rank() >= st.Status.Rank() {
				st = last
			}
		}
		delete(recorded, id)
		items = append(items, st)
	}
	// Records the derivation did not reach (an item whose events are lost).
	for _, st := range recorded {
		items = append(items, st)
	}
	if len(items) == 0 {
		writeError(w, r, contract.Errorf(contract.CodeNotFound, "no job with id %s", jobID))
		return
	}
	out := jobState{JobID: jobID, Counts: map[string]int{}, Items: items}
	statuses := make([]contract.Status, len(items))
	for i, it := range items {
		statuses[i] = it.Status
		out.Counts[string(it.Status)]++
	}
	out.Status = jobs.Overall(statuses)
	writeJSON(w, http.StatusOK, out)
}
