package auditstore

import (
	"context"
	"database/sql"
	"errors"
	"sync"
)

// stmtCache keeps the prepared statements of the batch writes on MySQL, by
// their SQL text, for the batches that follow. A multi-row statement sent
// as text makes the server parse and build every one of its thousands of
// values again, each time; prepared once per connection, it gets them in
// binary, and the server spends a fifth less CPU on a batch
// (docs/benchmarks.md). The statements of a full batch have one shape, so
// a backlog reuses a handful of them.
type stmtCache struct {
	db *sql.DB
	mu sync.Mutex
	m  map[string]*sql.Stmt
}

// maxStmts bounds the statements kept (each prepared on every connection
// that ran it), well inside the server's max_prepared_stmt_count (16,382
// by default) even with several replicas. The row counts that vary from
// batch to batch (the request rows of a batch) take a few dozen shapes.
const maxStmts = 64

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, m: make(map[string]*sql.Stmt)}
}

func (c *stmtCache) get(q string) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[q]
}

// prepare prepares the statements qs not kept yet. It runs outside any
// transaction: preparing takes a connection of the pool, and a transaction
// waiting for one while holding its own could wait for ever once every
// connection is held so. A statement the server refuses to prepare (out
// of max_prepared_stmt_count, say) is simply sent as text again.
func (c *stmtCache) prepare(ctx context.Context, qs []string) {
	for _, q := range qs {
		if c.get(q) != nil {
			continue
		}
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		if drop := c.add(q, st); drop != nil {
			// Closing waits for every connection that prepared it to
			// finish its current statement, which may wait on a row
			// lock of another batch; no batch waits for that.
			go drop.Close()
		}
	}
}

// add keeps st as the statement of q and returns the one to close: st if
// q has one already, or the one dropped to make room (any will do: a
// shape that comes back is prepared again).
func (c *stmtCache) add(q string, st *sql.Stmt) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[q]; ok {
		return st
	}
	var drop *sql.Stmt
	if len(c.m) >= maxStmts {
		for k, old := range c.m {
			drop = old
			delete(c.m, k)
			break
		}
	}
	c.m[q] = st
	return drop
}

func (c *stmtCache) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for k, st := range c.m {
		errs = append(errs, st.Close())
		delete(c.m, k)
	}
	return errors.Join(errs...)
}

// batchTx is the transaction of one batch. Its statements run prepared
// when the cache has them, else as text, noted for preparing once the
// transaction is over.
type batchTx struct {
	*sql.Tx
	stmts      *stmtCache // nil: none kept (SQLite)
	unprepared []string
}

func (t *batchTx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.cached(q); st != nil {
		return t.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return t.ExecContext(ctx, q, args...)
}

func (t *batchTx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if st := t.cached(q); st != nil {
		return t.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	return t.QueryContext(ctx, q, args...)
}

func (t *batchTx) cached(q string) *sql.Stmt {
	if t.stmts == nil {
		return nil
	}
	st := t.stmts.get(q)
	if st == nil {
		t.unprepared = append(t.unprepared, q)
	}
	return st
}

// prepareRest prepares the statements the transaction sent as text, for
// the next batches; call it once the transaction is over.
func (t *batchTx) prepareRest(ctx context.Context) {
	if t.stmts != nil && len(t.unprepared) > 0 {
		t.stmts.prepare(ctx, t.unprepared)
	}
}
