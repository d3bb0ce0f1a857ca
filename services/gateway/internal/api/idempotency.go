package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/services/gateway/internal/idempotency"
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
// request v; a repeated key is marked on the answer (Idempotent-Replayed).
// It returns nil without a key, and the error to answer when the key
// cannot be used.
func (s *Server) claimKey(w http.ResponseWriter, r *http.Request, endpoint string, v any) (*idempotent, error) {
	raw := r.Header.Get(HeaderIdempotencyKey)
	if raw == "" {
		return nil, nil
	}
	user, _ := caller(r.Context())
	key, valid := idempotency.NewKey(user, endpoint, raw)
	if !valid {
		return nil, contract.Errorf(contract.CodeMalformed, "%s must be 1 to %d printable ASCII characters", HeaderIdempotencyKey, idempotency.MaxKeyLen)
	}
	if s.cfg.Idempotency == nil {
		return nil, contract.Errorf(contract.CodeUnavailable, "%s is not supported by this gateway", HeaderIdempotencyKey)
	}
	canonical, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("fingerprint: %w", err)
	}
	replay, err := s.cfg.Idempotency.Claim(r.Context(), key, idempotency.Fingerprint(canonical))
	switch {
	case errors.Is(err, idempotency.ErrKeyReused):
		return nil, contract.Errorf(contract.CodeIdempotencyKeyReused, "this %s was already used for a different request; use a new key", HeaderIdempotencyKey)
	case err != nil:
		s.log.ErrorContext(r.Context(), "idempotency_claim_failed", "error", err)
		return nil, contract.Errorf(contract.CodeUnavailable, "the message broker is unreachable; try again later")
	}
	if replay {
		w.Header().Set(headerReplayed, "true")
	}
	return &idempotent{key: key, replay: replay}, nil
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
