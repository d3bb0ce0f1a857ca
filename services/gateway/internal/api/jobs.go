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
	JobID  string         `json:"job_id"`
	Status jobs.State     `json:"status"`
	Counts map[string]int `json:"counts"`
	// Size is the job's number of items, as its items tell (0 when
	// none does); Missing those never published.
	Size    int              `json:"size,omitempty"`
	Missing int              `json:"missing,omitempty"`
	Items   []stagings.State `json:"items"`
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
	// The job's size, from any item that carries it. Items are published
	// jobPublishers at a time, so a submission cut short leaves its gaps
	// within that many items of the last one published.
	size, gap, published := 0, 0, 0
	for i := range s.cfg.JobMaxItems {
		if size > 0 && i >= size {
			break
		}
		id := jobs.ItemID(jobID, i)
		st, inAudit := recorded[id]
		// Until the size is known, an ended item is read too: the audit's
		// record does not carry it.
		if !inAudit || st.Status.Rank() < contract.StatusSucceeded.Rank() || size == 0 {
			last, found, err := s.client.LastState(r.Context(), id)
			if err != nil {
				s.logFault(r, "job_item_state_failed", err)
				writeError(w, r, err)
				return
			}
			if !found && !inAudit {
				if gap++; size == 0 && gap == jobPublishers {
					break
				}
				continue
			}
			gap = 0
			published++
			size = max(size, last.JobSize)
			if found && (!privileged && last.Username != user) {
				continue
			}
			if found && last.Status.Rank() >= st.Status.Rank() {
				st = last
			}
		} else {
			published++
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
	out := jobState{JobID: jobID, Counts: map[string]int{}, Size: size, Items: items}
	statuses := make([]contract.Status, len(items))
	for i, it := range items {
		statuses[i] = it.Status
		out.Counts[string(it.Status)]++
	}
	out.Status = jobs.Overall(statuses)
	if out.Missing = max(size-published, 0); out.Missing > 0 {
		out.Status = jobs.Incomplete
	}
	writeJSON(w, http.StatusOK, out)
}
