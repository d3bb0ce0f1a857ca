package auditstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/skao/skao-staging/libs/contract"
)

// Stats says what Apply did.
type Stats struct {
	// Events is the number of events stored for the first time.
	Events int
	// Duplicates is the number of events already stored (redelivered,
	// replayed or repeated in the batch), which changed nothing.
	Duplicates int
	// Rows is the number of request rows inserted or updated.
	Rows int
	// Invalid holds the indexes in Batch.Invalid of the invalid messages
	// stored for the first time; the others were stored before and count
	// among the Duplicates.
	Invalid []int
}

// chunk bounds the rows of one statement, well inside the placeholder
// limits of MySQL (65,535) and SQLite (32,766).
const chunk = 500

var recordColumns = []string{
	"id", "job_id", "method", "username", "local_path_on_storage", "relative_path",
	"status", "outcome", "error_code", "error_reason", "bytes", "files", "adler32",
	"origin", "trace_id", "created_at", "started_at", "finished_at", "updated_at",
	"downloads",
}

// eventColumns: the event's own fields (its time, its source) are in the
// payload and read from there; copies of them in columns of their own
// cost the server a sixth of its parameters on a backlog.
var eventColumns = []string{"event_id", "request_id", "type", "payload"}

// Batch is what one Apply stores: request events and download events, as
// they came off the stream.
type Batch struct {
	Events    []contract.Event
	Downloads []contract.DownloadEvent
	// Received holds, by event id, the message an event or download event
	// was decoded from, when decoding added nothing to it: it is stored as
	// received rather than encoded again (a tenth of the audit's CPU on a
	// backlog). Each must be valid UTF-8 and decode to its event.
	Received map[string][]byte
	// Invalid are the messages that break the event rules, kept apart.
	Invalid []Invalid
}

// entry is one message of a batch, request event or download event: both
// go in the events table, keyed by their id.
type entry struct {
	id, requestID, typ string
	event              *contract.Event         // a request event, or
	download           *contract.DownloadEvent // a download event
	received           []byte                  // the message, when it can be stored as is
}

// payload is what the events table stores of e: the message as received
// when there is one, else the event encoded.
func (e entry) payload() ([]byte, error) {
	if e.received != nil {
		return e.received, nil
	}
	var msg any = e.event
	if e.download != nil {
		msg = e.download
	}
	payload, err := json.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.id, err)
	}
	return payload, nil
}

func (b Batch) entries() []entry {
	out := make([]entry, 0, len(b.Events)+len(b.Downloads))
	for i := range b.Events {
		ev := &b.Events[i]
		out = append(out, entry{id: ev.ID, requestID: ev.RequestID, typ: string(ev.Type), event: ev, received: b.Received[ev.ID]})
	}
	for i := range b.Downloads {
		dl := &b.Downloads[i]
		out = append(out, entry{id: dl.ID, requestID: dl.RequestID, typ: string(dl.Type), download: dl, received: b.Received[dl.ID]})
	}
	return out
}

// Apply stores a batch in one transaction: the events not stored before
// are added to the history and merged into their requests' rows (see
// merge); the others change nothing. Either the whole batch is stored or,
// on error, none of it. A download event changes no status: a completed one
// counts in its request's downloads, once.
//
// A batch is first tried on the assumption that none of its events is
// stored yet, as is the rule (a backlog, live traffic): the events are
// inserted without looking them up first. If one is already there (a
// redelivery, a replay), the transaction is rolled back and the batch is
// inserted again, looking the stored events up first. If another replica
// inserted a request row this batch found absent, only the merge into the
// rows is done again (see finish). The result is the same either way, and
// nothing is written twice.
func (s *Store) Apply(ctx context.Context, b Batch) (Stats, error) {
	for _, ev := range b.Events {
		if err := ValidateEvent(ev); err != nil {
			return Stats{}, err
		}
	}
	for _, dl := range b.Downloads {
		if err := ValidateDownload(dl); err != nil {
			return Stats{}, err
		}
	}
	p := &applying{s: s, entries: b.entries(), invalid: b.Invalid}
	err := p.begin(ctx, false)
	for errors.Is(err, errConflict) && p.attempt < conflictRetries {
		p.attempt++
		err = p.begin(ctx, true)
	}
	if err != nil {
		return Stats{}, err
	}
	return p.finish(ctx)
}

// applying is a batch on its way into the store: its transaction, and
// what it inserted so far.
type applying struct {
	s       *Store
	entries []entry
	attempt int      // re-applications so far
	tx      *batchTx // open between begin and finish
	fresh   []entry  // the entries inserted
	invalid []Invalid
	// invalidNew holds the indexes of the invalid messages inserted.
	invalidNew []int
}

// conflictRetries bounds the re-applications of a batch that keeps meeting
// rows another replica inserts meanwhile; past it the caller retries later.
const conflictRetries = 3

// errConflict: a row the batch meant to insert is already there.
var errConflict = errors.New("audit batch met rows stored meanwhile")

// begin opens the batch's transaction and inserts its events not stored
// yet: all of them, or with lookup those not found stored. On error the
// transaction is rolled back.
func (p *applying) begin(ctx context.Context, lookup bool) (err error) {
	s := p.s
	sqlTx, err := s.write.BeginTx(ctx, s.txOptions())
	if err != nil {
		return fmt.Errorf("begin audit batch: %w", err)
	}
	p.tx = &batchTx{Tx: sqlTx, stmts: s.stmts}
	defer func() {
		if err != nil {
			_ = p.tx.Rollback() // the error that brought us here says more
			p.tx.prepareRest(ctx)
		}
	}()
	p.fresh = unique(p.entries)
	if lookup {
		if p.fresh, err = s.freshEvents(ctx, p.tx, p.fresh); err != nil {
			return err
		}
	}
	if err := s.insertEvents(ctx, p.tx, p.fresh); err != nil {
		return err
	}
	p.invalidNew, err = s.insertInvalid(ctx, p.tx, p.invalid)
	return err
}

// finish merges the inserted events into their requests' rows and commits.
// The transaction is over when it returns. A merge that meets a row
// stored after all (see mergeRecords) is undone back to a savepoint and
// done again reading every row, in the same transaction: a new one would
// insert the events again.
func (p *applying) finish(ctx context.Context) (st Stats, err error) {
	tx, fresh := p.tx, p.fresh
	// Deferred calls run last first: the transaction is over (after
	// Commit, Rollback does nothing and reports sql.ErrTxDone) before
	// the statements it sent as text are prepared.
	defer tx.prepareRest(ctx)
	defer tx.Rollback()
	st.Duplicates = len(p.entries) - len(fresh) + len(p.invalid) - len(p.invalidNew)
	st.Invalid = p.invalidNew
	if len(fresh) == 0 {
		return st, tx.Commit()
	}
	if _, err := tx.ExecContext(ctx, "SAVEPOINT audit_records"); err != nil {
		return st, fmt.Errorf("savepoint: %w", err)
	}
	for {
		st.Rows, err = p.mergeRecords(ctx)
		if !errors.Is(err, errConflict) || p.attempt >= conflictRetries {
			break
		}
		p.attempt++
		if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT audit_records"); err != nil {
			return st, fmt.Errorf("rollback to savepoint: %w", err)
		}
	}
	if err != nil {
		return st, err
	}
	if err := tx.Commit(); err != nil {
		return st, fmt.Errorf("commit audit batch: %w", err)
	}
	st.Events = len(fresh)
	return st, nil
}

// mergeRecords merges the fresh events into their requests' rows and
// writes them, returning how many rows it wrote.
func (p *applying) mergeRecords(ctx context.Context) (int, error) {
	s, tx, fresh := p.s, p.tx, p.fresh
	var ids, read []string
	seen := make(map[string]bool)
	for _, e := range fresh {
		if !seen[e.requestID] {
			seen[e.requestID] = true
			ids = append(ids, e.requestID)
		}
	}
	// A request whose first event (queued, or rejected instead) is in the
	// batch has, as a rule, no row yet: it is not read (on a backlog,
	// reading rows that are not there was a twentieth of the server's
	// work). Reading would not protect it anyway: an absent row takes no
	// lock, so it is inserted, and if it is there after all (its first
	// event came late, or twice under another id, or another replica
	// inserted it), the insert fails and the merge is done again reading
	// every row.
	firsts := make(map[string]bool)
	if p.attempt == 0 {
		for _, e := range fresh {
			if e.event != nil && (e.event.Type == contract.EventQueued || e.event.Type == contract.EventRejected) {
				firsts[e.requestID] = true
			}
		}
	}
	for _, id := range ids {
		if !firsts[id] {
			read = append(read, id)
		}
	}
	rows, err := s.lockRecords(ctx, tx, read)
	if err != nil {
		return 0, err
	}
	existed := make(map[string]bool, len(rows))
	for id := range rows {
		existed[id] = true
	}
	changed := make(map[string]bool, len(ids))
	for _, e := range fresh {
		r, ok := rows[e.requestID]
		if e.download != nil {
			// A download of a request the audit has no row of (purged,
			// say) is kept in the history only: it creates no request.
			if ok && e.download.Type == contract.DownloadCompleted {
				r.Downloads++
				rows[e.requestID], changed[e.requestID] = r, true
			}
			continue
		}
		rows[e.requestID], changed[e.requestID] = merge(r, ok, *e.event), true
	}
	var inserts, updates []contract.Record
	for _, id := range ids {
		switch {
		case !changed[id]:
		case existed[id]:
			updates = append(updates, rows[id])
		default:
			inserts = append(inserts, rows[id])
		}
	}
	// Rows absent when read are inserted, not upserted: on MySQL, READ
	// COMMITTED takes no lock on an absent row, so another replica may
	// insert it meanwhile, and an upsert would overwrite its merge.
	if err := s.writeRecords(ctx, tx, inserts, false); err != nil {
		return 0, err
	}
	if err := s.writeRecords(ctx, tx, updates, true); err != nil {
		return 0, err
	}
	return len(inserts) + len(updates), nil
}

// unique returns entries without the repeats of an id, in batch order.
func unique(entries []entry) []entry {
	seen := make(map[string]bool, len(entries))
	out := make([]entry, 0, len(entries))
	for _, e := range entries {
		if !seen[e.id] {
			seen[e.id] = true
			out = append(out, e)
		}
	}
	return out
}

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
				s.nullTimeArg(r.StartedAt), s.nullTimeArg(r.FinishedAt), s.timeArg(r.UpdatedAt), r.Downloads)
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
	)
	err := row.Scan(&r.ID, &r.JobID, &method, &r.Username, &r.LocalPathOnStorage, &r.RelativePath,
		&status, &outcome, &errorCode, &r.ErrorReason, &r.Bytes, &r.Files, &r.Adler32,
		&r.Origin, &r.TraceID, &created, &started, &finished, &upd, &r.Downloads)
	if err != nil {
		return r, fmt.Errorf("read request row: %w", err)
	}
	r.Method, r.Status, r.Outcome, r.ErrorCode = contract.Method(method), contract.Status(status), contract.Outcome(outcome), contract.Code(errorCode)
	r.CreatedAt, r.StartedAt, r.FinishedAt, r.UpdatedAt = created.t, started.ptr(), finished.ptr(), upd.t
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
