package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/google/uuid"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/jobs"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// submitRequest is the body of POST /api/v1/stagings and one item of POST
// /api/v1/jobs.
type submitRequest struct {
	Method             string `json:"method"`
	Username           string `json:"username"`
	LocalPathOnStorage string `json:"local_path_on_storage,omitempty"`
	DID                string `json:"did,omitempty"`
	RelativePath       string `json:"relative_path"`
	ExpectedAdler32    string `json:"expected_adler32,omitempty"`
	// Lifetime is how many seconds the staged item is kept (0: the
	// site's default).
	Lifetime int64 `json:"lifetime,omitempty"`
	// JupyterToken is the user's own JupyterHub token (jupyter_copy only);
	// a secret, never logged or echoed.
	JupyterToken string `json:"jupyter_token,omitempty"`
}

// submitted answers an accepted submission.
type submitted struct {
	ID        string          `json:"id"`
	Status    contract.Status `json:"status"`
	StatusURL string          `json:"status_url"`
}

// submit is POST /api/v1/stagings: decode, authorize, claim the
// Idempotency-Key, validate, publish, answer 202. A refused request is
// recorded as rejected and answered with the id it is recorded under; a
// repeated submission whose request already has events is answered as the
// first one was, without publishing again.
func (s *Server) submit(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var body submitRequest
	if err := decodeBody(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		writeError(w, r, err)
		return
	}
	if err := mayActFor(ctx, body.Username); err != nil {
		writeError(w, r, err)
		return
	}
	idem, err := s.claimKey(w, r, "stagings", body)
	if err != nil {
		writeError(w, r, err)
		return
	}
	cmd := s.command(body)
	if idem != nil {
		cmd.ID = idem.key.ID(0)
	}
	seen, err := s.seen(ctx, idem, cmd.ID)
	if err != nil {
		s.logFault(r, "idempotent_lookup_failed", err)
		writeError(w, r, err)
		return
	}
	if err := s.client.Validate(ctx, cmd); err != nil {
		s.refuse(w, r, cmd, err, seen)
		return
	}
	if !seen && !s.publish(w, r, cmd) {
		return
	}
	w.Header().Set("Location", s.statusURL(cmd.ID))
	writeJSON(w, http.StatusAccepted, submitted{ID: cmd.ID, Status: contract.StatusQueued, StatusURL: s.statusURL(cmd.ID)})
}

// command is the command a submitted item asks for, with a fresh id.
func (s *Server) command(it submitRequest) contract.Command {
	cmd := s.client.NewCommand(stagings.Item{
		Method:             it.Method,
		Username:           it.Username,
		LocalPathOnStorage: it.LocalPathOnStorage,
		DID:                it.DID,
		RelativePath:       it.RelativePath,
		ExpectedAdler32:    it.ExpectedAdler32,
		Lifetime:           it.Lifetime,
	})
	cmd.JupyterToken = it.JupyterToken
	return cmd
}

// refuse answers cmd's refusal for cause. The audit keeps every refused
// request: cmd is recorded as rejected unless it already is (recorded),
// and the answer names the id it is recorded under, when it is.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, cmd contract.Command, cause error, recorded bool) {
	if !recorded {
		recorded = s.recordRejection(r.Context(), cmd, cause)
	}
	if !recorded {
		// The caller's mistake is still the answer; only the record is lost.
		writeError(w, r, cause)
		return
	}
	s.writeRecorded(w, r, cause, cmd.ID)
}

// recordRejection publishes cmd's rejected event for cause; it reports
// whether the audit will have the record.
func (s *Server) recordRejection(ctx context.Context, cmd contract.Command, cause error) bool {
	if err := s.client.Reject(ctx, cmd, cause); err != nil {
		s.log.WarnContext(ctx, "rejection_not_recorded", "id", cmd.ID, "error", err)
		return false
	}
	return true
}

// publish submits cmd and answers when it could not be; it reports whether
// the caller should go on answering.
func (s *Server) publish(w http.ResponseWriter, r *http.Request, cmd contract.Command) bool {
	refused, err := s.enqueue(r.Context(), cmd)
	switch {
	case err == nil:
		return true
	case contract.CodeOf(err) == contract.CodeQueueFull:
		s.refuse(w, r, refused, err, false)
	default:
		s.log.ErrorContext(r.Context(), "submit_failed", "id", cmd.ID, "error", err)
		writeError(w, r, err)
	}
	return false
}

// enqueue publishes cmd with its queued event. A full queue refuses cmd
// with queue_full, and refused is what to record the refusal as (see
// refusedForNow). A command whose queued event was not recorded is
// submitted all the same: its worker's events record it.
func (s *Server) enqueue(ctx context.Context, cmd contract.Command) (refused contract.Command, err error) {
	ctx, span := s.tracer.Start(ctx, "gateway.publish")
	err = s.client.Submit(ctx, cmd)
	span.End()
	switch {
	case contract.CodeOf(err) == contract.CodeQueueFull:
		s.log.WarnContext(ctx, "submit_refused", "id", cmd.ID, "error", err)
		return refusedForNow(cmd), err
	case errors.Is(err, stagings.ErrQueuedNotRecorded):
		s.log.WarnContext(ctx, "queued_event_not_recorded", "id", cmd.ID, "error", err)
		return contract.Command{}, nil
	}
	return contract.Command{}, err
}

// refusedForNow is cmd as recorded when a full queue refused it: under an
// id of its own and in no job, because the refusal is for now only. The
// submission's own id, which an Idempotency-Key names, stays free, so the
// same submission repeated later is published, not answered from this
// record.
func refusedForNow(cmd contract.Command) contract.Command {
	cmd.ID, cmd.JobID = uuid.NewString(), ""
	return cmd
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

// submitJob is POST /api/v1/jobs: every item of a batch is submitted like
// a single submission, under one job id. Items failing validation are
// recorded as rejected and the others still go; an item for another user
// refuses the whole job before anything is published.
func (s *Server) submitJob(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
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
		if err := mayActFor(ctx, it.Username); err != nil {
			writeError(w, r, err)
			return
		}
	}
	idem, err := s.claimKey(w, r, "jobs", body)
	if err != nil {
		writeError(w, r, err)
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
		cmd.ID, cmd.JobID, cmd.JobSize = jobs.ItemID(jobID, i), jobID, len(body.Items)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			items[i], faults[i] = s.submitItem(ctx, idem, cmd)
		})
	}
	wg.Wait()

	for i, err := range faults {
		if err != nil {
			s.log.ErrorContext(ctx, "job_submit_failed", "job_id", jobID, "id", items[i].ID, "error", err)
			body := errorFor(ctx, err)
			body.Detail = fmt.Sprintf("%s (items of job %s may be partly submitted; repeating the request with the same %s is safe)", body.Detail, jobID, HeaderIdempotencyKey)
			body.ID = jobID
			writeJSON(w, statusFor(body.Code), body)
			return
		}
	}
	url := s.cfg.PublicURL + "/api/v1/jobs/" + jobID
	w.Header().Set("Location", url)
	writeJSON(w, http.StatusAccepted, jobSubmitted{JobID: jobID, StatusURL: url, Items: items})
}

// submitItem is submit for one command of a job: a validation failure is
// the item's answer, an error is the system's (and the job's).
func (s *Server) submitItem(ctx context.Context, idem *idempotent, cmd contract.Command) (jobItem, error) {
	item := jobItem{ID: cmd.ID, Status: contract.StatusQueued}
	seen, err := s.seen(ctx, idem, cmd.ID)
	if err != nil {
		return item, err
	}
	if verr := s.client.Validate(ctx, cmd); verr != nil {
		item.Status, item.Error = contract.StatusRejected, contract.AsError(verr)
		if !seen {
			s.recordRejection(ctx, cmd, verr)
		}
		return item, nil
	}
	if seen {
		return item, nil
	}
	refused, err := s.enqueue(ctx, cmd)
	if contract.CodeOf(err) == contract.CodeQueueFull {
		// The job's answer is then 503, and repeating it publishes what
		// was refused.
		s.recordRejection(ctx, refused, err)
	}
	return item, err
}
