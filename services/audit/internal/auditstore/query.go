package auditstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/skao/skao-staging/libs/contract"
)

// Page sizes of List.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// Get returns the record of request id and, when withEvents is set, its
// events in the order they happened (its download events are Downloads').
// It returns ErrNotFound for an unknown id.
func (s *Store) Get(ctx context.Context, id string, withEvents bool) (contract.Record, []contract.Event, error) {
	q := "SELECT " + strings.Join(recordColumns, ", ") + " FROM staging_requests WHERE id = ?"
	r, err := scanRecord(s.read.QueryRowContext(ctx, q, id))
	if errors.Is(err, sql.ErrNoRows) {
		return contract.Record{}, nil, fmt.Errorf("request %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return contract.Record{}, nil, err
	}
	if !withEvents {
		return r, nil, nil
	}
	events, err := s.events(ctx, id)
	if err != nil {
		return contract.Record{}, nil, err
	}
	return r, events, nil
}

// payloads reads the stored messages of request requestID whose type is (or,
// with downloads false, is not) a download event's.
func (s *Store) payloads(ctx context.Context, requestID string, downloads bool) ([][]byte, error) {
	cond := "<>"
	if downloads {
		cond = "="
	}
	// SUBSTR, not LIKE: '_' is a LIKE wildcard, and the dialects escape it
	// differently.
	q := "SELECT payload FROM staging_events WHERE request_id = ? AND SUBSTR(type, 1, ?) " + cond + " ?"
	rows, err := s.read.QueryContext(ctx, q, requestID, len(downloadPrefix), downloadPrefix)
	if err != nil {
		return nil, fmt.Errorf("read events of %s: %w", requestID, err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var payload []byte
		if err := rows.Scan(&payload); err != nil {
			return nil, fmt.Errorf("read events of %s: %w", requestID, err)
		}
		out = append(out, payload)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events of %s: %w", requestID, err)
	}
	return out, nil
}

func (s *Store) events(ctx context.Context, requestID string) ([]contract.Event, error) {
	payloads, err := s.payloads(ctx, requestID, false)
	if err != nil {
		return nil, err
	}
	events := make([]contract.Event, 0, len(payloads))
	for _, payload := range payloads {
		var ev contract.Event
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("decode stored event of %s: %w", requestID, err)
		}
		events = append(events, ev)
	}
	// Sorted here, on the full-precision times of the payloads; events of
	// the same instant in the order a request goes through them, the parts
	// of a resolution in their order.
	slices.SortStableFunc(events, func(a, b contract.Event) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Type.Status().Rank(), b.Type.Status().Rank()),
			cmp.Compare(resolvedPart(a), resolvedPart(b)), strings.Compare(a.ID, b.ID))
	})
	return events, nil
}

// resolvedPart is the part number of a resolved event, 0 for another.
func resolvedPart(ev contract.Event) int {
	if ev.Resolved == nil {
		return 0
	}
	return ev.Resolved.Part
}

// Downloads returns the download events of request id's link in the order
// they happened (none for an unknown id).
func (s *Store) Downloads(ctx context.Context, id string) ([]contract.DownloadEvent, error) {
	payloads, err := s.payloads(ctx, id, true)
	if err != nil {
		return nil, err
	}
	out := make([]contract.DownloadEvent, 0, len(payloads))
	for _, payload := range payloads {
		var dl contract.DownloadEvent
		if err := json.Unmarshal(payload, &dl); err != nil {
			return nil, fmt.Errorf("decode stored download event of %s: %w", id, err)
		}
		out = append(out, dl)
	}
	// A download's start before its end when both share an instant.
	slices.SortStableFunc(out, func(a, b contract.DownloadEvent) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(downloadRank(a.Type), downloadRank(b.Type)), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// List returns the records matching every filter of req, newest first
// (by created_at, then id), and the cursor of the next page, empty on the
// last one. A malformed filter or cursor gives an error wrapping
// ErrInvalidQuery.
func (s *Store) List(ctx context.Context, req contract.AuditListRequest) ([]contract.Record, string, error) {
	limit, err := checkQuery(req)
	if err != nil {
		return nil, "", err
	}
	var (
		where []string
		args  []any
	)
	add := func(cond string, vals ...any) {
		where = append(where, cond)
		args = append(args, vals...)
	}
	if req.Username != "" {
		add("username = ?", req.Username)
	}
	if req.Status != "" {
		add("status = ?", string(req.Status))
	}
	if req.Method != "" {
		add("method = ?", string(req.Method))
	}
	if req.JobID != "" {
		add("job_id = ?", req.JobID)
	}
	if !req.Since.IsZero() {
		add("created_at >= ?", s.timeArg(req.Since))
	}
	if !req.Until.IsZero() {
		add("created_at < ?", s.timeArg(req.Until))
	}
	if req.Cursor != "" {
		c, err := decodeCursor(req.Cursor)
		if err != nil {
			return nil, "", err
		}
		add("(created_at < ? OR (created_at = ? AND id < ?))", s.timeArg(c.CreatedAt), s.timeArg(c.CreatedAt), c.ID)
	}
	q := "SELECT " + strings.Join(recordColumns, ", ") + " FROM staging_requests"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("list requests: %w", err)
	}
	defer rows.Close()
	records := []contract.Record{}
	for rows.Next() {
		r, err := scanRecord(rows)
		if err != nil {
			return nil, "", err
		}
		records = append(records, r)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list requests: %w", err)
	}
	if len(records) <= limit {
		return records, "", nil
	}
	records = records[:limit]
	last := records[limit-1]
	return records, encodeCursor(cursor{CreatedAt: last.CreatedAt, ID: last.ID}), nil
}

// checkQuery validates the filters and returns the page size.
func checkQuery(req contract.AuditListRequest) (int, error) {
	if req.Status != "" && req.Status.Rank() == 0 {
		return 0, fmt.Errorf("unknown status %q: %w", req.Status, ErrInvalidQuery)
	}
	if req.Method != "" && !slices.Contains(contract.Methods, req.Method) {
		return 0, fmt.Errorf("unknown method %q: %w", req.Method, ErrInvalidQuery)
	}
	if !req.Since.IsZero() && !req.Until.IsZero() && !req.Since.Before(req.Until) {
		return 0, fmt.Errorf("since must be before until: %w", ErrInvalidQuery)
	}
	switch {
	case req.Limit < 0:
		return 0, fmt.Errorf("negative limit %d: %w", req.Limit, ErrInvalidQuery)
	case req.Limit == 0:
		return DefaultLimit, nil
	}
	return min(req.Limit, MaxLimit), nil
}

// cursor is the position after the last record of a page: base64 of
// "<created_at RFC 3339>|<id>". Clients treat it as opaque.
type cursor struct {
	CreatedAt time.Time
	ID        string
}

func encodeCursor(c cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

func decodeCursor(s string) (cursor, error) {
	bad := fmt.Errorf("malformed cursor: %w", ErrInvalidQuery)
	data, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, bad
	}
	ts, id, ok := strings.Cut(string(data), "|")
	if !ok || id == "" {
		return cursor{}, bad
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return cursor{}, bad
	}
	return cursor{CreatedAt: t, ID: id}, nil
}

func downloadRank(t contract.DownloadEventType) int {
	if t == contract.DownloadStarted {
		return 0
	}
	return 1
}
