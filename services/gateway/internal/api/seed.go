package api

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/gateway/internal/stagings"
)

// seedItem is the seed's body: the two paths, at the top level or wrapped
// in "data".
type seedItem struct {
	LocalPathOnStorage string `json:"local_path_on_storage"`
	// DID is not the seed's: the source by Rucio DID instead of
	// local_path_on_storage, checked as on /api/v1/stagings.
	DID          string `json:"did,omitempty"`
	RelativePath string `json:"relative_path"`
	// ExpectedAdler32 is not the seed's; honoured as /api/v1 does.
	ExpectedAdler32 string `json:"expected_adler32,omitempty"`
}

type seedBody struct {
	seedItem
	Data *seedItem `json:"data"`
}

// seedSuccess is the seed's answer to a finished staging.
type seedSuccess struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// seedAccepted answers a staging still running when the wait ran out.
type seedAccepted struct {
	Status    string `json:"status"`
	Detail    string `json:"detail"`
	ID        string `json:"id"`
	StatusURL string `json:"status_url"`
}

// stageData is the seed's synchronous staging: submit, then wait (bounded)
// for the outcome. The query's jupyter_token goes into a jupyter_copy
// command (other methods ignore it, as the seed did) and is never logged.
func (s *Server) stageData(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var body seedBody
	if err := decodeSeedBody(w, r, s.cfg.MaxBodyBytes, &body); err != nil {
		writeError(w, r, err)
		return
	}
	item := body.seedItem
	if body.Data != nil {
		item = *body.Data
	}
	cmd := s.client.NewCommand(stagings.Item{
		Method:             q.Get("method"),
		Username:           q.Get("username"),
		LocalPathOnStorage: item.LocalPathOnStorage,
		DID:                item.DID,
		RelativePath:       item.RelativePath,
		ExpectedAdler32:    item.ExpectedAdler32,
	})
	// The stager keeps the seed's answer to a target that differs from
	// the source: a success that says so.
	cmd.Origin = contract.OriginStageData
	// The seed's clients send their token with every method; only
	// jupyter_copy uses it, and the contract refuses it on the others.
	if cmd.Method == contract.MethodJupyterCopy {
		cmd.JupyterToken = q.Get("jupyter_token")
	}
	if err := mayActFor(r.Context(), cmd.Username); err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.client.Validate(r.Context(), cmd); err != nil {
		s.refuse(w, r, cmd, err, false)
		return
	}

	watch, ok := s.watch(w, r, cmd.ID)
	if !ok {
		return
	}
	defer s.unwatch(r, watch, cmd.ID)
	if !s.publish(w, r, cmd) {
		return
	}

	// The answer comes after the wait, and may be a whole file: it gets
	// its own write timeout, not what is left of the request's.
	w = service.StreamWriter(w, r)
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.StageWaitTimeout)
	defer cancel()
	ctx, span := s.tracer.Start(ctx, "gateway.wait_outcome")
	ev, err := watch.Outcome(ctx)
	span.End()
	if err != nil {
		if r.Context().Err() != nil {
			// The client left; the staging goes on and is recorded.
			return
		}
		writeJSON(w, http.StatusAccepted, seedAccepted{
			Status:    "accepted",
			Detail:    fmt.Sprintf("the staging did not finish within %s and goes on; follow it at status_url", s.cfg.StageWaitTimeout),
			ID:        cmd.ID,
			StatusURL: s.statusURL(cmd.ID),
		})
		return
	}
	s.answerOutcome(w, r, cmd, ev)
}

func (s *Server) answerOutcome(w http.ResponseWriter, r *http.Request, cmd contract.Command, ev contract.Event) {
	if ev.Type != contract.EventSucceeded {
		e := ev.Error
		if e == nil {
			e = contract.Errorf(contract.CodeInternal, "the staging %s without a reason", ev.Type)
		}
		s.writeRecorded(w, r, e, cmd.ID)
		return
	}
	if cmd.Method == contract.MethodDirectDownload && ev.DownloadURL != "" {
		s.serveDownload(w, r, cmd, ev.DownloadURL)
		return
	}
	msg := ev.Message
	if msg == "" {
		switch ev.Outcome {
		case contract.OutcomeAlreadyPresent:
			msg = fmt.Sprintf("%s was already available for %s", cmd.RelativePath, cmd.Username)
		default:
			msg = fmt.Sprintf("staged %s for %s", cmd.RelativePath, cmd.Username)
		}
	}
	writeJSON(w, http.StatusOK, seedSuccess{Status: "success", Message: msg})
}

// serveDownload answers with the file behind an issued link, as the seed
// did. The link is served through the router, so it reaches whichever
// handler serves downloads (the proxy to the stager or, in the all-in-one,
// the stager's own handler) and is streamed, never buffered.
func (s *Server) serveDownload(w http.ResponseWriter, r *http.Request, cmd contract.Command, link string) {
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(u.Path, DownloadsPrefix) {
		s.log.ErrorContext(r.Context(), "bad_download_link", "id", cmd.ID)
		writeError(w, r, contract.Errorf(contract.CodeInternal, "the stager issued a download link the gateway cannot serve"))
		return
	}
	// A fresh route holder: the inner request must not relabel this one.
	ctx := context.WithValue(r.Context(), routeKey, (*routeInfo)(nil))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.RequestURI(), nil)
	if err != nil {
		writeError(w, r, fmt.Errorf("download request: %w", err))
		return
	}
	req.RequestURI = u.RequestURI()
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	req.Header.Set(HeaderRequestID, RequestID(r.Context()))
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	s.router.ServeHTTP(&attachment{ResponseWriter: w, name: path.Base(cmd.RelativePath)}, req)
}

// attachment makes a successful download the seed's attachment.
type attachment struct {
	http.ResponseWriter
	name        string
	wroteHeader bool
}

func (a *attachment) WriteHeader(code int) {
	if !a.wroteHeader && (code == http.StatusOK || code == http.StatusPartialContent) {
		h := a.Header()
		h.Set("Content-Type", "application/octet-stream")
		if h.Get("Content-Disposition") == "" {
			h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.name}))
		}
	}
	a.wroteHeader = true
	a.ResponseWriter.WriteHeader(code)
}

func (a *attachment) Write(b []byte) (int, error) {
	if !a.wroteHeader {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseWriter.Write(b)
}

func (a *attachment) Unwrap() http.ResponseWriter { return a.ResponseWriter }

// seedConfig is GET /config/: the seed's keys and what else helps a client;
// never a secret.
type seedConfig struct {
	SourceStoragePath string             `json:"source_storage_path"`
	TargetStoragePath string             `json:"target_storage_path"`
	AllowedMethods    contract.MethodSet `json:"allowed_methods"`
	StageWaitTimeout  string             `json:"stage_wait_timeout"`
	MaxBodyBytes      int64              `json:"max_body_bytes"`
	Demo              bool               `json:"demo"`
}

func (s *Server) config(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, seedConfig{
		SourceStoragePath: s.cfg.SourceRoot,
		TargetStoragePath: s.cfg.UserAreaRoot,
		AllowedMethods:    s.client.Allowed(),
		StageWaitTimeout:  s.cfg.StageWaitTimeout.String(),
		MaxBodyBytes:      s.cfg.MaxBodyBytes,
		Demo:              s.cfg.Demo,
	})
}

func (s *Server) allowedMethods(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, allowedMethods{Methods: s.client.Allowed()})
}

// watch starts following the events of request id, so that an outcome
// published from now on cannot be missed; it answers the fault itself and
// reports false when it cannot.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, id string) (*stagings.Watch, bool) {
	watch, err := s.client.Watch(id)
	if err != nil {
		s.logFault(r, "watch_failed", err)
		writeError(w, r, err)
		return nil, false
	}
	return watch, true
}

// unwatch ends what watch started.
func (s *Server) unwatch(r *http.Request, watch *stagings.Watch, id string) {
	if err := watch.Close(); err != nil {
		s.log.WarnContext(r.Context(), "unwatch_failed", "id", id, "error", err)
	}
}
