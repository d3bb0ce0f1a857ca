package stagings

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
)

// State is a request's current state as the API reports it.
type State struct {
	ID                 string             `json:"id"`
	JobID              string             `json:"job_id,omitempty"`
	JobSize            int                `json:"job_size,omitempty"`
	Status             contract.Status    `json:"status"`
	Method             contract.Method    `json:"method"`
	Username           string             `json:"username"`
	LocalPathOnStorage string             `json:"local_path_on_storage"`
	DID                string             `json:"did,omitempty"`
	RelativePath       string             `json:"relative_path"`
	Outcome            contract.Outcome   `json:"outcome,omitempty"`
	Message            string             `json:"message,omitempty"`
	Error              *contract.Error    `json:"error,omitempty"`
	Progress           *contract.Progress `json:"progress,omitempty"`
	Bytes              int64              `json:"bytes"`
	Files              int64              `json:"files"`
	Adler32            string             `json:"adler32,omitempty"`
	DownloadURL        string             `json:"download_url,omitempty"`
	// ExpiresAt is when the staged item goes, or the download link ends.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	TraceID   string     `json:"trace_id,omitempty"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// StateFromEvent is the state a request is in after ev.
func StateFromEvent(ev contract.Event) State {
	return State{
		ID:                 ev.RequestID,
		JobID:              ev.JobID,
		JobSize:            ev.JobSize,
		Status:             ev.Type.Status(),
		Method:             ev.Method,
		Username:           ev.Username,
		LocalPathOnStorage: ev.LocalPathOnStorage,
		DID:                ev.DID,
		RelativePath:       ev.RelativePath,
		Outcome:            ev.Outcome,
		Message:            ev.Message,
		Error:              ev.Error,
		Progress:           ev.Progress,
		Bytes:              ev.Bytes,
		Files:              ev.Files,
		Adler32:            ev.Adler32,
		DownloadURL:        ev.DownloadURL,
		ExpiresAt:          ev.ExpiresAt,
		TraceID:            ev.TraceID,
		UpdatedAt:          ev.Time,
	}
}

// StateFromRecord is the state the audit recorded.
func StateFromRecord(r contract.Record) State {
	s := State{
		ID:                 r.ID,
		JobID:              r.JobID,
		Status:             r.Status,
		Method:             r.Method,
		Username:           r.Username,
		LocalPathOnStorage: r.LocalPathOnStorage,
		DID:                r.DID,
		RelativePath:       r.RelativePath,
		Outcome:            r.Outcome,
		Bytes:              r.Bytes,
		Files:              r.Files,
		Adler32:            r.Adler32,
		ExpiresAt:          r.ExpiresAt,
		TraceID:            r.TraceID,
		UpdatedAt:          r.UpdatedAt,
	}
	if !r.CreatedAt.IsZero() {
		created := r.CreatedAt
		s.CreatedAt = &created
	}
	if r.ErrorCode != "" {
		s.Error = &contract.Error{Code: r.ErrorCode, Detail: r.ErrorReason}
	}
	return s
}

// Get returns request id's current state: the last event on its subject
// while the event stream still holds it, else the audit's record.
func (c *Client) Get(ctx context.Context, id string) (State, error) {
	if err := contract.ValidateID("id", id); err != nil {
		return State{}, err
	}
	if err := c.connected("read request state"); err != nil {
		return State{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	ev, err := c.lastEvent(ctx, id)
	switch {
	case err == nil:
		return StateFromEvent(ev), nil
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return State{}, unavailable("read request state", err)
	}
	var reply contract.AuditGetReply
	if err := c.ask(ctx, contract.SubjectAuditGet, contract.AuditGetRequest{ID: id}, &reply); err != nil {
		return State{}, err
	}
	switch {
	case reply.Error != nil:
		return State{}, reply.Error
	case reply.Record == nil:
		return State{}, contract.Errorf(contract.CodeNotFound, "no staging request with id %s", id)
	}
	return StateFromRecord(*reply.Record), nil
}

func (c *Client) lastEvent(ctx context.Context, id string) (contract.Event, error) {
	stream, err := c.eventStream(ctx)
	if err != nil {
		return contract.Event{}, err
	}
	msg, err := stream.GetLastMsgForSubject(ctx, contract.EventSubject(id))
	if err != nil {
		return contract.Event{}, fmt.Errorf("last event of %s: %w", id, err)
	}
	var ev contract.Event
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		return contract.Event{}, fmt.Errorf("decode last event of %s: %w", id, err)
	}
	return ev, nil
}

// eventStream is the event stream's handle, looked up once.
func (c *Client) eventStream(ctx context.Context) (jetstream.Stream, error) {
	return c.streams.Stream(ctx, c.js, contract.StreamEvents)
}

// List asks the audit for the records matching q.
func (c *Client) List(ctx context.Context, q contract.AuditListRequest) (contract.AuditListReply, error) {
	if err := c.connected("list requests"); err != nil {
		return contract.AuditListReply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var reply contract.AuditListReply
	if err := c.ask(ctx, contract.SubjectAuditList, q, &reply); err != nil {
		return contract.AuditListReply{}, err
	}
	if reply.Error != nil {
		return contract.AuditListReply{}, reply.Error
	}
	if reply.Items == nil {
		reply.Items = []contract.Record{}
	}
	return reply, nil
}

// ask sends an audit query and decodes its reply.
func (c *Client) ask(ctx context.Context, subject string, req, reply any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s query: %w", subject, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	bus.InjectTrace(ctx, msg.Header)
	resp, err := c.nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return fmt.Errorf("%w: %w: %w", contract.Errorf(contract.CodeUnavailable, "the audit service did not answer; try again later"), ErrUnavailable, err)
	}
	if err := json.Unmarshal(resp.Data, reply); err != nil {
		return fmt.Errorf("decode %s reply: %w", subject, err)
	}
	return nil
}
