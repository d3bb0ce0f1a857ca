package auditstore

import (
	"context"
	"fmt"
	"time"

	"github.com/skao/skao-staging/libs/contract"
)

// QueuedRequest names a request still queued, as Queued lists it.
type QueuedRequest struct {
	ID        string
	CreatedAt time.Time
}

// Queued returns up to limit requests still queued that were created
// before cutoff, oldest first (by created_at, then id), starting after
// the request after; its zero value starts at the oldest. The status
// index (status, created_at, id) answers it.
func (s *Store) Queued(ctx context.Context, cutoff time.Time, after QueuedRequest, limit int) ([]QueuedRequest, error) {
	q := "SELECT id, created_at FROM staging_requests WHERE status = ? AND created_at < ?"
	args := []any{string(contract.StatusQueued), s.timeArg(cutoff)}
	if after.ID != "" {
		q += " AND (created_at > ? OR (created_at = ? AND id > ?))"
		args = append(args, s.timeArg(after.CreatedAt), s.timeArg(after.CreatedAt), after.ID)
	}
	q += " ORDER BY created_at, id LIMIT ?"
	args = append(args, limit)
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list queued requests: %w", err)
	}
	defer rows.Close()
	var out []QueuedRequest
	for rows.Next() {
		var (
			r       QueuedRequest
			created dbTime
		)
		if err := rows.Scan(&r.ID, &created); err != nil {
			return nil, fmt.Errorf("list queued requests: %w", err)
		}
		r.CreatedAt = created.t
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list queued requests: %w", err)
	}
	return out, nil
}
