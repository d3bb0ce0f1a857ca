package auditstore

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/skao/skao-staging/libs/contract"
)

// Invalid is a message of the events stream that breaks the event rules:
// the store keeps it apart from the requests and their events, in the
// invalid events table, and it never touches a request's record.
type Invalid struct {
	// StreamSeq and Payload (the whole message) identify it: a message
	// stored again (redelivered, replayed) changes nothing.
	StreamSeq uint64
	Subject   string
	Payload   []byte
	Code      contract.Code
	Reason    string
	// PublishedAt is when the stream stored it, ReceivedAt when the audit
	// refused it.
	PublishedAt, ReceivedAt time.Time
}

// MaxInvalidPayload is how much of an invalid message is kept.
const MaxInvalidPayload = 64 << 10

// insertInvalid stores the invalid messages not stored before and returns
// the indexes in invalid of those it stored.
func (s *Store) insertInvalid(ctx context.Context, tx *batchTx, invalid []Invalid) ([]int, error) {
	ignore := " ON CONFLICT (stream_seq, digest) DO NOTHING"
	if s.dialect == dialectMySQL {
		ignore = " ON DUPLICATE KEY UPDATE id = id"
	}
	q := "INSERT INTO staging_invalid_events (stream_seq, digest, subject, code, reason, size, payload, published_at, received_at) VALUES " +
		tuples(1, 9) + ignore
	var stored []int
	// One row at a time: invalid messages are rare, and each insert says
	// whether it stored something new.
	for i, inv := range invalid {
		digest := sha256.Sum256(inv.Payload)
		payload := inv.Payload[:min(len(inv.Payload), MaxInvalidPayload)]
		res, err := tx.ExecContext(ctx, q, int64(inv.StreamSeq), hex.EncodeToString(digest[:]),
			clip(validText(inv.Subject), maxSubject), clip(validText(string(inv.Code)), maxShort), clip(validText(inv.Reason), maxText),
			len(inv.Payload), payload, s.timeArg(inv.PublishedAt), s.timeArg(inv.ReceivedAt))
		if err != nil {
			return nil, fmt.Errorf("insert invalid event: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			stored = append(stored, i)
		}
	}
	return stored, nil
}

// maxSubject is the width of the subject column.
const maxSubject = 512

// validText is s with anything not UTF-8 replaced: a MySQL text column refuses
// it, and the batch with it, again on every delivery.
func validText(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// ListInvalid returns the invalid events stored, newest first, and the
// cursor of the next page, empty on the last one. A negative limit or a
// malformed cursor gives an error wrapping ErrInvalidQuery.
func (s *Store) ListInvalid(ctx context.Context, req contract.AuditInvalidRequest) ([]contract.InvalidEvent, string, error) {
	limit, err := checkQuery(contract.AuditListRequest{Limit: req.Limit})
	if err != nil {
		return nil, "", err
	}
	q := "SELECT id, stream_seq, subject, code, reason, size, payload, published_at, received_at FROM staging_invalid_events"
	args := []any{}
	if req.Cursor != "" {
		before, err := decodeInvalidCursor(req.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += " WHERE id < ?"
		args = append(args, before)
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list invalid events: %w", err)
	}
	defer rows.Close()
	items := []contract.InvalidEvent{}
	for rows.Next() {
		var (
			it                  contract.InvalidEvent
			seq                 int64
			code                string
			payload             []byte
			published, received dbTime
		)
		if err := rows.Scan(&it.ID, &seq, &it.Subject, &code, &it.Reason, &it.Size, &payload, &published, &received); err != nil {
			return nil, "", fmt.Errorf("list invalid events: %w", err)
		}
		it.StreamSeq, it.Code = uint64(seq), contract.Code(code)
		it.Payload, it.Truncated = validText(string(payload)), it.Size > int64(len(payload))
		it.PublishedAt, it.ReceivedAt = published.t, received.t
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list invalid events: %w", err)
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	return items, base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(items[limit-1].ID, 10))), nil
}

func decodeInvalidCursor(s string) (int64, error) {
	data, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, fmt.Errorf("malformed cursor: %w", ErrInvalidQuery)
	}
	id, err := strconv.ParseInt(string(data), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("malformed cursor: %w", ErrInvalidQuery)
	}
	return id, nil
}

// PurgeInvalid deletes the invalid events received before cutoff and
// returns how many it deleted.
func (s *Store) PurgeInvalid(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		ids, err := s.idsOf(ctx, "SELECT id FROM staging_invalid_events WHERE received_at < ? ORDER BY received_at LIMIT ?", s.timeArg(cutoff), purgeChunk)
		if err != nil || len(ids) == 0 {
			return total, err
		}
		res, err := s.write.ExecContext(ctx, "DELETE FROM staging_invalid_events WHERE id IN ("+placeholders(len(ids))+")", ids...)
		if err != nil {
			return total, fmt.Errorf("purge invalid events: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if len(ids) < purgeChunk {
			return total, nil
		}
	}
}

func (s *Store) idsOf(ctx context.Context, q string, args ...any) ([]any, error) {
	rows, err := s.write.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("find invalid events to purge: %w", err)
	}
	defer rows.Close()
	var ids []any
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("find invalid events to purge: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find invalid events to purge: %w", err)
	}
	return ids, nil
}
