package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/idempotency"
	"github.com/skao/skao-staging/services/gateway/internal/jobs"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// HeaderIdempotencyKey makes a submission safe to repeat.
const HeaderIdempotencyKey = "Idempotency-Key"

// headerReplayed marks the answer to a repeated Idempotency-Key.
const headerReplayed = "Idempotent-Replayed"

// IdempotencyStore remembers which request an Idempotency-Key was first
// used for (idempotency.Store).
type IdempotencyStore interface {
	Claim(ctx context.Context, k idempotency.Key, fingerprint string) (replay bool, err error)
}

// idempotent is a submission under an Idempotency-Key.
type idempotent struct {
	key    idempotency.Key
	replay bool
}

// claimKey reads the Idempotency-Key of r, if any, and claims it for the
// request v. It returns nil without a key; ok is false when it answered.
func (s *Server) claimKey(w http.ResponseWriter, r *http.Request, endpoint string, v any) (idem *idempotent, ok bool) {
	raw := r.Header.Get(HeaderIdempotencyKey)
	if raw == "" {
		return nil, true
	}
	user, _ := caller(r.Context())
	key, valid := idempotency.NewKey(user, endpoint, raw)
	if !valid {
		writeError(w, r, contract.Errorf(contract.CodeMalformed, "%s must be 1 to %d printable ASCII characters", HeaderIdempotencyKey, idempotency.MaxKeyLen))
		return nil, false
	}
	if s.cfg.Idempotency == nil {
		writeError(w, r, contract.Errorf(contract.CodeUnavailable, "%s is not supported by this gateway", HeaderIdempotencyKey))
		return nil, false
	}
	canonical, err := json.Marshal(v)
	if err != nil {
		writeError(w, r, fmt.Errorf("fingerprint: %w", err))
		return nil, false
	}
	replay, err := s.cfg.Idempotency.Claim(r.Context(), key, idempotency.Fingerprint(canonical))
	switch {
	case errors.Is(err, idempotency.ErrKeyReused):
		writeError(w, r, contract.Errorf(contract.CodeIdempotencyKeyReused, "this %s was already used for a different request; use a new key", HeaderIdempotencyKey))
		return nil, false
	case err != nil:
		s.log.ErrorContext(r.Context(), "idempotency_claim_failed", "request_id", RequestID(r.Context()), "error", err)
		writeError(w, r, contract.Errorf(contract.CodeUnavailable, "the message broker is unreachable; try again later"))
		return nil, false
	}
	if replay {
		w.Header().Set(headerReplayed, "true")
	}
	return &idempotent{key: key, replay: replay}, true
}

// seen reports whether a repeated submission's request id already has
// events: it was published (or rejected) the first time and must not be
// again, even after the duplicates window has passed.
func (s *Server) seen(ctx context.Context, idem *idempotent, id string) (bool, error) {
	if idem == nil || !idem.replay {
		return false, nil
	}
	_, found, err := s.client.LastState(ctx, id)
	return found, err
}

// jobRequest is the body of POST /api/v1/jobs.
type jobRequest struct {
	Items []submitRequest `json:"items"`
}

// jobItem is one item of an accepted job.
type jobItem struct {
	ID     string          `json:"id"`
	Status contract.Status `json:"status"`
	Error  *contract.Error `json:"error,omitempty"`
}

type jobSubmitted struct {
	JobID     string    `json:"job_id"`
	StatusURL string    `json:"status_url"`
	Items     []jobItem `json:"items"`
}

// jobPublishers bounds the commands of one job published at once.
const jobPublishers = 16

// submitJob validates and submits every item of a batch like a single
// submission, under one job id. Items failing validation are recorded as
// rejected and the others still go; an item for another user refuses the
// whole job before anything is published.
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	var body jobRequest
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		writeError(w, r, err)
		return
	}
	switch {
	case len(body.Items) == 0:
		writeError(w, r, contract.Errorf(contract.CodeMissingField, "items must hold at least one item"))
		return
	case len(body.Items) > s.cfg.JobMaxItems:
		writeError(w, r, contract.Errorf(contract.CodeMalformed, "a job holds at most %d items, not %d", s.cfg.JobMaxItems, len(body.Items)))
		return
	}
	for _, it := range body.Items {
		if err := mayActFor(r.Context(), it.Username); err != nil {
			writeError(w, r, err)
			return
		}
	}
	idem, ok := s.claimKey(w, r, "jobs", body)
	if !ok {
		return
	}
	jobID := uuid.NewString()
	if idem != nil {
		jobID = idem.key.JobID()
	}

	items := make([]jobItem, len(body.Items))
	faults := make([]error, len(body.Items))
	sem := make(chan struct{}, jobPublishers)
	var wg sync.WaitGroup
	for i, it := range body.Items {
		cmd := s.command(it)
		cmd.ID, cmd.JobID = jobs.ItemID(jobID, i), jobID
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			items[i], faults[i] = s.submitItem(r.Context(), idem, cmd)
		})
	}
	wg.Wait()

	for i, err := range faults {
		if err != nil {
			s.log.ErrorContext(r.Context(), "job_submit_failed", "request_id", RequestID(r.Context()), "job_id", jobID, "id", items[i].ID, "error", err)
			body := errorFor(r, err)
			body.Detail = fmt.Sprintf("%s (items of job %s may be partly submitted; repeating the request with the same %s is safe)", body.Detail, jobID, HeaderIdempotencyKey)
			body.ID = jobID
			writeErrorBody(w, r, statusFor(contract.CodeOf(err)), body)
			return
		}
	}
	url := s.cfg.PublicURL + "/api/v1/jobs/" + jobID
	w.Header().Set("Location", url)
	writeJSON(w, http.StatusAccepted, jobSubmitted{JobID: jobID, StatusURL: url, Items: items})
}

// submitItem validates and submits one command of a job; a validation
// failure is the item's answer, an error is the system's.
func (s *Server) submitItem(ctx context.Context, idem *idempotent, cmd contract.Command) (jobItem, error) {
	item := jobItem{ID: cmd.ID, Status: contract.StatusQueued}
	seen, err := s.seen(ctx, idem, cmd.ID)
	if err != nil {
		return item, err
	}
	if verr := s.client.Validate(ctx, cmd); verr != nil {
		item.Status, item.Error = contract.StatusRejected, contract.AsError(verr)
		if !seen {
			if err := s.client.Reject(ctx, cmd, verr); err != nil {
				s.log.WarnContext(ctx, "rejection_not_recorded", "request_id", RequestID(ctx), "id", cmd.ID, "error", err)
			}
		}
		return item, nil
	}
	if seen {
		return item, nil
	}
	err = s.client.Submit(ctx, cmd)
	if contract.CodeOf(err) == contract.CodeQueueFull {
		// The job's answer is then 503, and repeating it publishes what
		// was refused (see refusedForNow).
		if rerr := s.client.Reject(ctx, refusedForNow(cmd), err); rerr != nil {
			s.log.WarnContext(ctx, "rejection_not_recorded", "request_id", RequestID(ctx), "id", cmd.ID, "error", rerr)
		}
		return item, err
	}
	if errors.Is(err, stagings.ErrQueuedNotRecorded) {
		s.log.WarnContext(ctx, "queued_event_not_recorded", "request_id", RequestID(ctx), "id", cmd.ID, "error", err)
		err = nil
	}
	return item, err
}

// command is the command a submitted item asks for, with a fresh id.
func (s *Server) command(it submitRequest) contract.Command {
	cmd := s.client.NewCommand(stagings.Item{
		Method:             it.Method,
		Username:           it.Username,
		LocalPathOnStorage: it.LocalPathOnStorage,
		RelativePath:       it.RelativePath,
		ExpectedAdler32:    it.ExpectedAdler32,
	})
	cmd.JupyterToken = it.JupyterToken
	return cmd
}

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
			s.log.WarnContext(r.Context(), "job_audit_list_failed", "request_id", RequestID(r.Context()), "job_id", jobID, "error", err)
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
