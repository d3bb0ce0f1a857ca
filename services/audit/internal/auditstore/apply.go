package auditstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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

// Batch is what one Apply stores: request events and download events, as
// they came off the stream.
type Batch struct {
	Events    []contract.Event
	Downloads []contract.DownloadEvent
	// Received holds, by event id, the message an event or download event
	// was decoded from, when decoding added nothing to it: it is stored as
	// received rather than encoded again, which spares CPU on a backlog.
	// Each must be valid UTF-8 and decode to its event.
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

// Apply stores a batch in one transaction: Stage, then Commit.
func (s *Store) Apply(ctx context.Context, b Batch) (Stats, error) {
	staged, err := s.Stage(ctx, b)
	if err != nil {
		return Stats{}, err
	}
	return staged.Commit(ctx)
}

// Stage begins storing a batch: it opens the batch's transaction and
// inserts its events, which touches no request row. The caller then calls
// Commit or Rollback. A writer may so stage a batch while the batch before
// it commits on another connection (on SQLite, which has one writer
// connection, staging waits for that commit).
//
// The events not stored before are added to the history and, at Commit,
// merged into their requests' rows (see merge); the others change nothing.
// Either the whole batch is stored or, on error, none of it. A download
// event changes no status: a completed one counts in its request's
// downloads, once.
//
// A batch is first tried on the assumption that none of its events is
// stored yet, as is the rule (a backlog, live traffic): the events are
// inserted without looking them up first. If one is already there (a
// redelivery, a replay), the transaction is rolled back and the batch is
// inserted again, looking the stored events up first. If another replica
// inserted a request row this batch found absent, only the merge into the
// rows is done again (see Commit). The result is the same either way, and
// nothing is written twice.
func (s *Store) Stage(ctx context.Context, b Batch) (*Staged, error) {
	for _, ev := range b.Events {
		if err := ValidateEvent(ev); err != nil {
			return nil, err
		}
	}
	for _, dl := range b.Downloads {
		if err := ValidateDownload(dl); err != nil {
			return nil, err
		}
	}
	p := &Staged{s: s, entries: b.entries(), invalid: b.Invalid}
	err := p.begin(ctx, false)
	for errors.Is(err, errConflict) && p.attempt < conflictRetries {
		p.attempt++
		err = p.begin(ctx, true)
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Staged is a batch whose events are inserted in a transaction still
// open, until Commit or Rollback.
type Staged struct {
	s       *Store
	entries []entry
	attempt int      // re-applications so far
	tx      *batchTx // open between begin and Commit or Rollback
	fresh   []entry  // the entries inserted
	invalid []Invalid
	// invalidNew holds the indexes of the invalid messages inserted.
	invalidNew []int
}

// Rollback gives the staged batch up: nothing of it is stored.
func (p *Staged) Rollback(ctx context.Context) {
	_ = p.tx.Rollback() // fails only when the transaction is over already
	p.tx.prepareRest(ctx)
}

// conflictRetries bounds the re-applications of a batch that keeps meeting
// rows another replica inserts meanwhile; past it the caller retries later.
const conflictRetries = 3

// errConflict: a row the batch meant to insert is already there.
var errConflict = errors.New("audit batch met rows stored meanwhile")

// begin opens the batch's transaction and inserts its events not stored
// yet: all of them, or with lookup those not found stored. On error the
// transaction is rolled back.
func (p *Staged) begin(ctx context.Context, lookup bool) (err error) {
	s := p.s
	sqlTx, err := s.write.BeginTx(ctx, s.txOptions())
	if err != nil {
		return fmt.Errorf("begin audit batch: %w", err)
	}
	p.tx = &batchTx{Tx: sqlTx, stmts: s.stmts}
	defer func() {
		if err != nil {
			p.Rollback(ctx)
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

// Commit merges the staged events into their requests' rows, commits, and
// says what was stored. The transaction is over when it returns. Another
// batch that holds a request row still uncommitted delays it until that
// batch is over. A merge that meets a row stored after all (see
// mergeRecords) is undone back to a savepoint and done again reading
// every row, in the same transaction: beginning a new one would wait for
// a connection, which on SQLite the batch staged behind this one may
// hold, and would insert the events again.
func (p *Staged) Commit(ctx context.Context) (st Stats, err error) {
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
func (p *Staged) mergeRecords(ctx context.Context) (int, error) {
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
	// batch has, as a rule, no row yet: it is not read, which spares the
	// server work on a backlog (docs/benchmarks.md, Audit). Reading
	// would not protect it anyway: an absent row takes no
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
