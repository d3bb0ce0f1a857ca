// Package auditstore keeps the audit's permanent record of staging requests
// in MySQL/MariaDB or SQLite: one row per request, merged from its events so
// that state only moves forward, and the events themselves, keyed by event
// id so that a redelivered or replayed event changes nothing.
package auditstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/skao/skao-staging/libs/contract"
)

// Sentinel errors callers tell apart.
var (
	// ErrNotFound: no request with that id.
	ErrNotFound = errors.New("request not found")
	// ErrInvalidQuery: a list filter or cursor is malformed.
	ErrInvalidQuery = errors.New("invalid query")
	// ErrInvalidEvent: an event can never be stored (see ValidateEvent);
	// retrying it is pointless.
	ErrInvalidEvent = errors.New("invalid event")
)

//go:embed migrations/mysql/*.sql migrations/sqlite/*.sql
var migrations embed.FS

type dialect int

const (
	dialectMySQL dialect = iota
	dialectSQLite
)

// Store is the audit database. Its methods are safe for concurrent use.
type Store struct {
	dialect dialect
	// write takes the batches; read answers queries. They are one pool on
	// MySQL. On SQLite the writer is a single connection (SQLite has one
	// writer at a time; queuing in the pool beats SQLITE_BUSY) and readers
	// have their own pool, which WAL mode lets run beside the writer.
	write, read *sql.DB
	// stmts keeps the batch writes' statements prepared; nil on SQLite,
	// whose one writer connection a transaction holds while a statement
	// would be prepared beside it.
	stmts *stmtCache
}

// OpenMySQL connects to the MySQL or MariaDB database named by dsn (a
// go-sql-driver DSN) and brings its schema up to date.
func OpenMySQL(ctx context.Context, dsn string, log *slog.Logger) (*Store, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		// The driver's message may quote the DSN, password included.
		return nil, errors.New("parse mysql dsn: malformed data source name")
	}
	// Times go in and come out as UTC time.Time, whatever the DSN says.
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.Logger = driverLogger{log}
	// Queries with arguments go as text, one round trip each instead of
	// three (prepare, execute, close). Safe with the utf8mb4 connection
	// character set. The batch writes, which run the same few statements
	// over and over, keep theirs prepared instead (stmtCache).
	cfg.InterpolateParams = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	// A server that stops answering must fail the batch, not hang it.
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxLifetime(5 * time.Minute)
	s := &Store{dialect: dialectMySQL, write: db, read: db, stmts: newStmtCache(db)}
	if err := s.migrate(ctx, log); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// driverLogger puts the MySQL driver's own messages (a dropped idle
// connection, say) in the service's log instead of bare stderr.
type driverLogger struct{ log *slog.Logger }

func (l driverLogger) Print(v ...any) { l.log.Warn("mysql_driver", "message", fmt.Sprint(v...)) }

// OpenSQLite opens (creating it if need be) the SQLite database file at path
// and brings its schema up to date.
func OpenSQLite(ctx context.Context, path string, log *slog.Logger) (*Store, error) {
	// synchronous(FULL): an event is acknowledged once its batch commits,
	// so the commit must survive a power cut.
	const pragmas = "_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	write, err := sql.Open("sqlite", path+"?"+pragmas+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	read, err := sql.Open("sqlite", path+"?"+pragmas+"&_pragma=query_only(1)")
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	read.SetMaxOpenConns(4)
	s := &Store{dialect: dialectSQLite, write: write, read: read}
	if err := s.migrate(ctx, log); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// migrator returns the goose provider of the store's migrations.
func (s *Store) migrator() (*goose.Provider, error) {
	gd, dir := goose.DialectMySQL, "migrations/mysql"
	if s.dialect == dialectSQLite {
		gd, dir = goose.DialectSQLite3, "migrations/sqlite"
	}
	fsys, err := fs.Sub(migrations, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	p, err := goose.NewProvider(gd, s.write, fsys, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	return p, nil
}

func (s *Store) migrate(ctx context.Context, log *slog.Logger) error {
	if s.dialect == dialectMySQL {
		// Replicas starting together would otherwise apply the same
		// migration side by side; MySQL DDL is not transactional, so all
		// but one would fail half-way. goose has no MySQL session locker
		// of its own (v3.30: Postgres only), and its Up looks for pending
		// migrations, creating the version table, before it takes one:
		// the lock is held around the whole of Up instead.
		unlock, err := lockMigrations(ctx, s.write)
		if err != nil {
			return err
		}
		defer unlock()
	}
	p, err := s.migrator()
	if err != nil {
		return err
	}
	results, err := p.Up(ctx)
	if err != nil && ctx.Err() != nil {
		// Cancelled mid-migration, database/sql closes the transaction
		// and goose reports only that; say the open was stopped.
		return fmt.Errorf("apply migrations: stopped (%w): %w", ctx.Err(), err)
	}
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	for _, r := range results {
		log.InfoContext(ctx, "migration_applied", "version", r.Source.Version, "file", r.Source.Path, "duration", r.Duration.String())
	}
	return nil
}

// migrationLock names the named lock that serialises the migrations of
// audit replicas sharing a MySQL database: GET_LOCK names are server-wide,
// so it carries the database's name, hashed to fit the 64-character limit.
const migrationLock = "CONCAT('skao_audit_migrate:', MD5(DATABASE()))"

// migrationLockWait bounds the wait for another replica's migrations.
const migrationLockWait = 5 * time.Minute

// lockMigrations takes the migration lock on a connection of its own and
// returns its release. The server releases the lock when the connection
// ends, so a replica that dies while migrating leaves no stale lock.
func lockMigrations(ctx context.Context, db *sql.DB) (func(), error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("take the migration lock: %w", err)
	}
	var got sql.NullInt64
	q := "SELECT GET_LOCK(" + migrationLock + ", ?)"
	if err := conn.QueryRowContext(ctx, q, int(migrationLockWait.Seconds())).Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("take the migration lock: %w", err)
	}
	if got.Int64 != 1 {
		conn.Close()
		return nil, fmt.Errorf("take the migration lock: another replica held it for %s", migrationLockWait)
	}
	return func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK("+migrationLock+")"); err != nil {
			// Not back to the pool still holding the lock: a connection
			// reported bad is closed, and the server releases it then.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
		conn.Close()
	}, nil
}

// Ping checks that the database answers. It uses the readers: SQLite's
// one writer connection may be busy with a batch for a while, which is no
// reason to report the database down.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("ping audit database: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *Store) Close() error {
	var err error
	if s.stmts != nil {
		err = s.stmts.close()
	}
	err = errors.Join(err, s.write.Close())
	if s.read != s.write {
		err = errors.Join(err, s.read.Close())
	}
	return err
}

// Times every store can hold: MySQL's DATETIME(6) takes the years 1000 to
// 9999, and nothing of this system happened before 1970. Outside them a
// store refuses the row, and with it the whole batch, again on every
// redelivery: such an event is refused before it reaches a batch.
var (
	minTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	// endTime is the first instant past the range.
	endTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// storableTime reports whether t is in the range every store can hold.
func storableTime(t time.Time) bool { return !t.Before(minTime) && t.Before(endTime) }

// ValidateEvent reports, wrapping ErrInvalidEvent, why ev can never be
// stored: its ids cannot key a row, or it has no time or one no store can
// hold, or an expires_at no store can hold (it goes in the request's row).
func ValidateEvent(ev contract.Event) error {
	if isDownloadType(string(ev.Type)) {
		// Download events have a subject of their own; on a request's
		// subject one would be read back as a download.
		return fmt.Errorf("event %s of download type %q on a request's subject: %w", ev.ID, ev.Type, ErrInvalidEvent)
	}
	if ev.ExpiresAt != nil && !storableTime(*ev.ExpiresAt) {
		return fmt.Errorf("event %s expires at %s, outside 1970 to 9999: %w", ev.ID, ev.ExpiresAt.Format(time.RFC3339Nano), ErrInvalidEvent)
	}
	return validateKeys("event", ev.ID, ev.RequestID, ev.Time)
}

// ValidateDownload reports, wrapping ErrInvalidEvent, why dl can never be
// stored, as ValidateEvent does for a request event.
func ValidateDownload(dl contract.DownloadEvent) error {
	if !isDownloadType(string(dl.Type)) {
		// The type column tells the two kinds apart when read back.
		return fmt.Errorf("download event %s of type %q: %w", dl.ID, dl.Type, ErrInvalidEvent)
	}
	return validateKeys("download event", dl.ID, dl.RequestID, dl.Time)
}

// validateKeys checks what every stored event needs: an id that fits its
// column, a request id, and a time every store can hold.
func validateKeys(kind, id, requestID string, t time.Time) error {
	switch {
	case id == "":
		return fmt.Errorf("%s without id: %w", kind, ErrInvalidEvent)
	case utf8.RuneCountInString(id) > maxEventID:
		return fmt.Errorf("%s id longer than %d characters: %w", kind, maxEventID, ErrInvalidEvent)
	case t.IsZero():
		return fmt.Errorf("%s %s without time: %w", kind, id, ErrInvalidEvent)
	case !storableTime(t):
		return fmt.Errorf("%s %s at %s, outside 1970 to 9999: %w", kind, id, t.Format(time.RFC3339Nano), ErrInvalidEvent)
	}
	if err := contract.ValidateID("request_id", requestID); err != nil {
		return fmt.Errorf("%s %s: %v: %w", kind, id, err, ErrInvalidEvent)
	}
	return nil
}

// isDownloadType tells download events from request events in the events
// table, which holds both.
func isDownloadType(t string) bool { return strings.HasPrefix(t, downloadPrefix) }

const downloadPrefix = "download_"

// Column widths (characters) of the MySQL schema. Strings are cut to fit
// before they are written, so a long field is shortened rather than
// failing the batch forever.
const (
	maxEventID  = 128
	maxShort    = 64   // job_id, username, error_code
	maxName     = 128  // origin, source
	maxWord     = 32   // method, outcome, trace_id
	maxText     = 8192 // paths, error_reason (TEXT: 64 KiB, 4 bytes a character)
	maxType     = 32   // event type (download_completed: 18)
	maxChecksum = 16   // adler32
	maxDID      = 276  // did (contract.MaxDIDLen)
)

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// timeLayout is how SQLite stores times: fixed width, so text order is
// time order.
const timeLayout = "2006-01-02 15:04:05.000000"

// toDB truncates t to the stored precision in UTC.
func toDB(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func (s *Store) timeArg(t time.Time) any {
	if s.dialect == dialectSQLite {
		return toDB(t).Format(timeLayout)
	}
	return toDB(t)
}

func (s *Store) nullTimeArg(t *time.Time) any {
	if t == nil {
		return nil
	}
	return s.timeArg(*t)
}

// dbTime scans a time column of either dialect.
type dbTime struct {
	t     time.Time
	valid bool
}

func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*d = dbTime{}
		return nil
	case time.Time:
		*d = dbTime{t: x.UTC(), valid: true}
		return nil
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	}
	return fmt.Errorf("scan time from %T", v)
}

func (d *dbTime) parse(s string) error {
	t, err := time.ParseInLocation(timeLayout, s, time.UTC)
	if err != nil {
		return fmt.Errorf("scan time: %w", err)
	}
	*d = dbTime{t: t, valid: true}
	return nil
}

func (d dbTime) ptr() *time.Time {
	if !d.valid {
		return nil
	}
	t := d.t
	return &t
}
