package auditstore

// The SQL of a batch: the reads and writes of the events and request
// tables that Apply (apply.go) strings together.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/skao/skao-staging/libs/contract"
)

// chunk bounds the rows of one statement, well inside the placeholder
// limits of MySQL (65,535) and SQLite (32,766).
const chunk = 500

var recordColumns = []string{
	"id", "job_id", "method", "username", "local_path_on_storage", "relative_path",
	"status", "outcome", "error_code", "error_reason", "bytes", "files", "adler32",
	"origin", "trace_id", "created_at", "started_at", "finished_at", "updated_at",
	"downloads", "did", "expires_at",
}

// eventColumns: the event's own fields (its time, its source) are in the
// payload and read from there; columns of their own would only add to the
// parameters the server handles per event, its largest cost on a backlog
// (docs/benchmarks.md, Audit).
var eventColumns = []string{"event_id", "request_id", "type", "payload"}

// duplicateKey reports whether err is a primary-key violation.
func duplicateKey(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number == 1062 // ER_DUP_ENTRY
	}
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

// txOptions: on MySQL, READ COMMITTED spares the gap locks that REPEATABLE
// READ takes on the absent rows a batch is about to insert, which would
// make two audit replicas deadlock. SQLite has a single writer.
func (s *Store) txOptions() *sql.TxOptions {
	if s.dialect == dialectMySQL {
		return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
	}
	return nil
}

// freshEvents returns the entries (each id once) whose id is not yet
// stored, in batch order.
func (s *Store) freshEvents(ctx context.Context, tx *batchTx, entries []entry) ([]entry, error) {
	stored := make(map[string]bool)
	for part := range slices.Chunk(entries, chunk) {
		ids := make([]any, len(part))
		for i, e := range part {
			ids[i] = e.id
		}
		q := "SELECT event_id FROM staging_events WHERE event_id IN (" + placeholders(len(part)) + ")"
		rows, err := tx.QueryContext(ctx, q, ids...)
		if err != nil {
			return nil, fmt.Errorf("look up stored events: %w", err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up stored events: %w", err)
			}
			stored[id] = true
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("look up stored events: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("look up stored events: %w", err)
		}
	}
	var fresh []entry
	for _, e := range entries {
		if !stored[e.id] {
			fresh = append(fresh, e)
		}
	}
	return fresh, nil
}

// lockRecords reads the rows of the requests ids, locking them on MySQL so
// that a second audit replica merges after this batch, not beside it.
func (s *Store) lockRecords(ctx context.Context, tx *batchTx, ids []string) (map[string]contract.Record, error) {
	out := make(map[string]contract.Record, len(ids))
	lock := ""
	if s.dialect == dialectMySQL {
		lock = " FOR UPDATE"
	}
	for part := range slices.Chunk(ids, chunk) {
		q := "SELECT " + strings.Join(recordColumns, ", ") + " FROM staging_requests WHERE id IN (" + placeholders(len(part)) + ")" + lock
		rows, err := tx.query(ctx, q, anySlice(part)...)
		if err != nil {
			return nil, fmt.Errorf("read request rows: %w", err)
		}
		for rows.Next() {
			r, err := scanRecord(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[r.ID] = r
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("read request rows: %w", err)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read request rows: %w", err)
		}
	}
	return out, nil
}

func (s *Store) insertEvents(ctx context.Context, tx *batchTx, entries []entry) error {
	for part := range slices.Chunk(entries, chunk) {
		args := make([]any, 0, len(part)*len(eventColumns))
		for _, e := range part {
			payload, err := e.payload()
			if err != nil {
				return err
			}
			args = append(args, e.id, e.requestID, clip(e.typ, maxType), string(payload))
		}
		q := "INSERT INTO staging_events (" + strings.Join(eventColumns, ", ") + ") VALUES " + tuples(len(part), len(eventColumns))
		if _, err := tx.exec(ctx, q, args...); err != nil {
			if duplicateKey(err) {
				return fmt.Errorf("insert events: %w", errConflict)
			}
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

// writeRecords writes whole rows: the merge already happened, under the
// row locks, so the new values simply replace the old (upsert) or, for rows
// that were absent, are inserted; an insert that meets a row stored
// meanwhile reports errConflict.
func (s *Store) writeRecords(ctx context.Context, tx *batchTx, records []contract.Record, upsert bool) error {
	conflict := ""
	if upsert {
		var set []string
		for _, c := range recordColumns[1:] {
			if s.dialect == dialectMySQL {
				// VALUES() rather than the row alias of MySQL 8.0.19+,
				// which MariaDB does not have.
				set = append(set, c+" = VALUES("+c+")")
			} else {
				set = append(set, c+" = excluded."+c)
			}
		}
		conflict = " ON DUPLICATE KEY UPDATE "
		if s.dialect == dialectSQLite {
			conflict = " ON CONFLICT (id) DO UPDATE SET "
		}
		conflict += strings.Join(set, ", ")
	}
	for part := range slices.Chunk(records, chunk) {
		args := make([]any, 0, len(part)*len(recordColumns))
		for _, r := range part {
			args = append(args, r.ID, r.JobID, string(r.Method), r.Username, r.LocalPathOnStorage,
				r.RelativePath, string(r.Status), string(r.Outcome), string(r.ErrorCode), r.ErrorReason,
				r.Bytes, r.Files, r.Adler32, r.Origin, r.TraceID, s.timeArg(r.CreatedAt),
				s.nullTimeArg(r.StartedAt), s.nullTimeArg(r.FinishedAt), s.timeArg(r.UpdatedAt), r.Downloads, r.DID,
				s.nullTimeArg(r.ExpiresAt))
		}
		q := "INSERT INTO staging_requests (" + strings.Join(recordColumns, ", ") + ") VALUES " +
			tuples(len(part), len(recordColumns)) + conflict
		if _, err := tx.exec(ctx, q, args...); err != nil {
			if duplicateKey(err) {
				return fmt.Errorf("insert request rows: %w", errConflict)
			}
			return fmt.Errorf("write request rows: %w", err)
		}
	}
	return nil
}

type scanner interface{ Scan(dest ...any) error }

func scanRecord(row scanner) (contract.Record, error) {
	var (
		r                                  contract.Record
		method, status, outcome, errorCode string
		created, started, finished, upd    dbTime
		expires                            dbTime
	)
	err := row.Scan(&r.ID, &r.JobID, &method, &r.Username, &r.LocalPathOnStorage, &r.RelativePath,
		&status, &outcome, &errorCode, &r.ErrorReason, &r.Bytes, &r.Files, &r.Adler32,
		&r.Origin, &r.TraceID, &created, &started, &finished, &upd, &r.Downloads, &r.DID, &expires)
	if err != nil {
		return r, fmt.Errorf("read request row: %w", err)
	}
	r.Method, r.Status, r.Outcome, r.ErrorCode = contract.Method(method), contract.Status(status), contract.Outcome(outcome), contract.Code(errorCode)
	r.CreatedAt, r.StartedAt, r.FinishedAt, r.UpdatedAt = created.t, started.ptr(), finished.ptr(), upd.t
	r.ExpiresAt = expires.ptr()
	return r, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func tuples(rows, cols int) string {
	one := "(" + placeholders(cols) + ")"
	return strings.TrimSuffix(strings.Repeat(one+", ", rows), ", ")
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
