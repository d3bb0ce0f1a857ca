// Package history answers queries on the audit record over NATS
// request/reply: one request with its events (contract.SubjectAuditGet),
// filtered, paged lists (contract.SubjectAuditList) and the messages refused
// as invalid events (contract.SubjectAuditInvalid). Every audit replica
// subscribes in one queue group, so each query is answered once.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// QueueGroup is the queue group of the audit's query subscriptions.
const QueueGroup = "audit"

// maxConcurrent bounds the queries answered at once by one replica.
const maxConcurrent = 32

// queryTimeout bounds one query; requesters rarely wait longer.
const queryTimeout = 10 * time.Second

// Store answers the queries.
type Store interface {
	Get(ctx context.Context, id string, withEvents bool) (contract.Record, []contract.Event, error)
	Downloads(ctx context.Context, id string) ([]contract.DownloadEvent, error)
	List(ctx context.Context, req contract.AuditListRequest) ([]contract.Record, string, error)
	ListInvalid(ctx context.Context, req contract.AuditInvalidRequest) ([]contract.InvalidEvent, string, error)
}

// Server answers audit queries.
type Server struct {
	store   Store
	log     *slog.Logger
	tracer  trace.Tracer
	queries *prometheus.CounterVec
	// maxReply is the largest message the NATS server takes (set by
	// Serve; 0: unknown, no bound).
	maxReply int64
}

// New returns a server over store, its metrics registered on reg.
func New(store Store, log *slog.Logger, tp trace.TracerProvider, reg prometheus.Registerer) *Server {
	queries := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "staging_audit_queries_total",
		Help: "Audit queries answered, by query (get, list, invalid) and result (ok or an error code).",
	}, []string{"query", "result"})
	return &Server{store: store, log: log, tracer: tp.Tracer("skao-staging/audit"), queries: queries}
}

// Serve subscribes on nc and answers until ctx is cancelled, then stops
// taking queries, lets the ones received finish, and returns nil.
func (s *Server) Serve(ctx context.Context, nc *nats.Conn) error {
	s.maxReply = nc.MaxPayload()
	sem := make(chan struct{}, maxConcurrent)
	var wg sync.WaitGroup
	work := context.WithoutCancel(ctx)
	handle := func(query string, answer func(ctx context.Context, data []byte) (any, *contract.Error)) nats.MsgHandler {
		return func(msg *nats.Msg) {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				s.answer(work, msg, query, answer)
			})
		}
	}
	var subs []*nats.Subscription
	for subject, h := range map[string]nats.MsgHandler{
		contract.SubjectAuditGet:     handle("get", s.get),
		contract.SubjectAuditList:    handle("list", s.list),
		contract.SubjectAuditInvalid: handle("invalid", s.invalid),
	} {
		sub, err := nc.QueueSubscribe(subject, QueueGroup, h)
		if err != nil {
			unsubscribe(subs)
			return fmt.Errorf("subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	// The subscriptions are in place once the server has seen them.
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		unsubscribe(subs)
		return fmt.Errorf("subscribe audit queries: %w", err)
	}
	s.log.InfoContext(ctx, "answering_queries", "subjects", []string{contract.SubjectAuditGet, contract.SubjectAuditList, contract.SubjectAuditInvalid}, "queue", QueueGroup)
	<-ctx.Done()
	// Drain: no new queries reach this replica; those already received
	// are answered, for at most queryTimeout.
	closed := make([]<-chan nats.SubStatus, len(subs))
	for i, sub := range subs {
		closed[i] = sub.StatusChanged(nats.SubscriptionClosed)
		if err := sub.Drain(); err != nil {
			s.log.WarnContext(work, "drain_failed", "subject", sub.Subject, "error", err)
		}
	}
	timeout := time.NewTimer(queryTimeout)
	defer timeout.Stop()
wait:
	for i, sub := range subs {
		if !sub.IsValid() {
			continue
		}
		select {
		case <-closed[i]:
		case <-timeout.C:
			s.log.WarnContext(work, "drain_timed_out", "subject", sub.Subject)
			break wait
		}
	}
	wg.Wait()
	return nil
}

func unsubscribe(subs []*nats.Subscription) {
	for _, sub := range subs {
		_ = sub.Unsubscribe() // best effort on the way out of a failed start
	}
}

func (s *Server) answer(ctx context.Context, msg *nats.Msg, query string, answer func(ctx context.Context, data []byte) (any, *contract.Error)) {
	ctx = bus.ExtractTrace(ctx, msg.Header)
	ctx, span := s.tracer.Start(ctx, "audit "+query, trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	reply, qerr := answer(ctx, msg.Data)
	result := "ok"
	if qerr != nil {
		result = string(qerr.Code)
		span.SetStatus(codes.Error, string(qerr.Code))
	}
	span.SetAttributes(attribute.String("staging.audit.result", result))
	s.queries.WithLabelValues(query, result).Inc()
	if msg.Reply == "" {
		return
	}
	data, err := json.Marshal(reply)
	if err != nil {
		s.log.ErrorContext(ctx, "encode_reply_failed", "query", query, "error", err)
		return
	}
	if err := msg.Respond(data); err != nil {
		s.log.WarnContext(ctx, "reply_failed", "query", query, "error", err)
	}
}

func (s *Server) get(ctx context.Context, data []byte) (any, *contract.Error) {
	var req contract.AuditGetRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return getError(contract.Errorf(contract.CodeMalformed, "audit get request is not valid JSON: %v", err))
	}
	if err := contract.ValidateID("id", req.ID); err != nil {
		return getError(contract.AsError(err))
	}
	rec, events, err := s.store.Get(ctx, req.ID, req.WithEvents)
	switch {
	case errors.Is(err, auditstore.ErrNotFound):
		return getError(contract.Errorf(contract.CodeNotFound, "no request %s in the audit", req.ID))
	case err != nil:
		return getError(s.unavailable(ctx, "get", err))
	}
	reply := &contract.AuditGetReply{Record: &rec, Events: events}
	if req.WithEvents {
		if reply.Downloads, err = s.store.Downloads(ctx, req.ID); err != nil {
			return getError(s.unavailable(ctx, "get", err))
		}
		fitReply(reply, s.maxReply)
	}
	return reply, nil
}

// fitReply leaves the paths out of the resolved events of r when r would
// not fit in one NATS message of max bytes: a request by a DID of many
// thousand files may have more of them than a message holds. The events'
// totals and parts stay, and r says that the paths were left out.
func fitReply(r *contract.AuditGetReply, max int64) {
	if max <= 0 {
		return
	}
	if data, err := json.Marshal(r); err != nil || int64(len(data)) <= max {
		return
	}
	for i, ev := range r.Events {
		if ev.Resolved != nil {
			bare := *ev.Resolved
			bare.Paths = []string{}
			r.Events[i].Resolved = &bare
			r.ResolvedPathsOmitted = true
		}
	}
}

func (s *Server) list(ctx context.Context, data []byte) (any, *contract.Error) {
	var req contract.AuditListRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return listError(contract.Errorf(contract.CodeMalformed, "audit list request is not valid JSON: %v", err))
	}
	items, next, err := s.store.List(ctx, req)
	switch {
	case errors.Is(err, auditstore.ErrInvalidQuery):
		return listError(contract.Errorf(contract.CodeMalformed, "%v", err))
	case err != nil:
		return listError(s.unavailable(ctx, "list", err))
	}
	return &contract.AuditListReply{Items: items, NextCursor: next}, nil
}

func (s *Server) invalid(ctx context.Context, data []byte) (any, *contract.Error) {
	var req contract.AuditInvalidRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return invalidError(contract.Errorf(contract.CodeMalformed, "audit invalid request is not valid JSON: %v", err))
	}
	items, next, err := s.store.ListInvalid(ctx, req)
	switch {
	case errors.Is(err, auditstore.ErrInvalidQuery):
		return invalidError(contract.Errorf(contract.CodeMalformed, "%v", err))
	case err != nil:
		return invalidError(s.unavailable(ctx, "invalid", err))
	}
	return &contract.AuditInvalidReply{Items: items, NextCursor: next}, nil
}

// unavailable logs a store failure and returns what the requester sees:
// the code, not the database's message.
func (s *Server) unavailable(ctx context.Context, query string, err error) *contract.Error {
	s.log.ErrorContext(ctx, "query_failed", "query", query, "error", err)
	return contract.Errorf(contract.CodeUnavailable, "the audit database is not available; try again later")
}

func getError(e *contract.Error) (any, *contract.Error) {
	return &contract.AuditGetReply{Error: e}, e
}

func listError(e *contract.Error) (any, *contract.Error) {
	return &contract.AuditListReply{Items: []contract.Record{}, Error: e}, e
}

func invalidError(e *contract.Error) (any, *contract.Error) {
	return &contract.AuditInvalidReply{Items: []contract.InvalidEvent{}, Error: e}, e
}
