package auditstore

import (
	"context"
	"fmt"
	"time"
)

// purgeChunk bounds the requests deleted per transaction, so retention
// never holds long locks against the batches being written.
const purgeChunk = 1000

// Purge deletes the requests finished before cutoff, with their events,
// and returns how many requests it deleted. Requests still running are
// kept whatever their age.
func (s *Store) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		n, err := s.purgeChunk(ctx, cutoff)
		total += n
		if err != nil || n < purgeChunk {
			return total, err
		}
	}
}

func (s *Store) purgeChunk(ctx context.Context, cutoff time.Time) (int64, error) {
	tx, err := s.write.BeginTx(ctx, s.txOptions())
	if err != nil {
		return 0, fmt.Errorf("begin purge: %w", err)
	}
	// After Commit, Rollback does nothing and reports sql.ErrTxDone.
	defer tx.Rollback()
	// By created_at, whose index the list queries share: a request
	// finishes no earlier than its first event, so every one finished
	// before cutoff was created before it, and only the few older ones
	// still running are read and passed over.
	rows, err := tx.QueryContext(ctx, "SELECT id FROM staging_requests WHERE created_at < ? AND finished_at < ? ORDER BY created_at LIMIT ?",
		s.timeArg(cutoff), s.timeArg(cutoff), purgeChunk)
	if err != nil {
		return 0, fmt.Errorf("find requests to purge: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return 0, fmt.Errorf("find requests to purge: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Close(); err != nil {
		return 0, fmt.Errorf("find requests to purge: %w", err)
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("find requests to purge: %w", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	in := "(" + placeholders(len(ids)) + ")"
	if _, err := tx.ExecContext(ctx, "DELETE FROM staging_events WHERE request_id IN "+in, anySlice(ids)...); err != nil {
		return 0, fmt.Errorf("purge events: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM staging_requests WHERE id IN "+in, anySlice(ids)...); err != nil {
		return 0, fmt.Errorf("purge requests: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit purge: %w", err)
	}
	return int64(len(ids)), nil
}
