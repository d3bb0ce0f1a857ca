// Package audit is the staging service's permanent record: a durable
// consumer of every event and download event on STAGING_EVENTS into
// MySQL/MariaDB (SQLite when embedded), one row per request whose state
// only moves forward, and the history queries other services ask over NATS
// request/reply.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/bus"
	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
	"github.com/skao/skao-staging/services/audit/internal/history"
	"github.com/skao/skao-staging/services/audit/internal/recorder"
)

// Config is the audit's configuration (variables STAGING_<env>).
type Config struct {
	MySQLDSN   string `env:"MYSQL_DSN" secret:"true" help:"MySQL/MariaDB DSN (go-sql-driver form, e.g. audit:pw@tcp(db:3306)/audit); when empty the audit uses SQLite"`
	SQLitePath string `env:"SQLITE_PATH" envDefault:"audit.db" help:"SQLite database file, used when MYSQL_DSN is empty"`
	// BatchSize and BatchWait shape the writes: up to BatchSize events are
	// committed in one transaction, after waiting at most BatchWait for
	// them. Larger batches go faster into MariaDB (docs/benchmarks.md,
	// Audit); a batch that fails is delivered again whole, whatever its
	// size.
	BatchSize int           `env:"AUDIT_BATCH_SIZE" envDefault:"2000" help:"most events written in one transaction"`
	BatchWait time.Duration `env:"AUDIT_BATCH_WAIT" envDefault:"200ms" help:"longest wait for a full batch of events"`
	// Retention of 0 keeps every request forever.
	Retention time.Duration `env:"AUDIT_RETENTION" envDefault:"0s" help:"delete requests finished longer ago than this, and invalid events received longer ago (0: keep forever); keep it longer than EVENTS_MAX_AGE, or a replay of the stream brings purged requests back"`
	// RetryMin and RetryMax bound the back-off while the database fails.
	RetryMin time.Duration `env:"AUDIT_RETRY_MIN" envDefault:"1s" help:"first delay before events the database refused come again"`
	RetryMax time.Duration `env:"AUDIT_RETRY_MAX" envDefault:"30s" help:"longest delay before events the database refused come again"`
	// AckWait is how long a delivered event may stay unacknowledged before
	// JetStream delivers it again (after a crash of the audit, say).
	AckWait time.Duration `env:"AUDIT_ACK_WAIT" envDefault:"60s" help:"redelivery delay of events an audit instance took but never acknowledged"`
	// QueueSweepInterval is how often the audit looks for requests whose
	// command STAGING_REQUESTS removed, older than its max age, before a
	// worker took it, and records them as failed (queue_expired).
	QueueSweepInterval time.Duration `env:"AUDIT_QUEUE_SWEEP_INTERVAL" envDefault:"1m" help:"how often requests still queued after the command queue's max age (REQUESTS_MAX_AGE, read from the stream) are recorded as failed with queue_expired"`
}

func (c Config) check() error {
	var errs []error
	if c.MySQLDSN == "" && c.SQLitePath == "" {
		errs = append(errs, errors.New("set MYSQL_DSN or SQLITE_PATH"))
	}
	if c.BatchSize <= 0 || c.BatchSize > 10000 {
		errs = append(errs, fmt.Errorf("AUDIT_BATCH_SIZE %d: want 1 to 10000", c.BatchSize))
	}
	if c.BatchWait <= 0 {
		errs = append(errs, fmt.Errorf("AUDIT_BATCH_WAIT %s: want a positive duration", c.BatchWait))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, fmt.Errorf("AUDIT_RETRY_MIN %s, AUDIT_RETRY_MAX %s: want a positive minimum, the maximum no less", c.RetryMin, c.RetryMax))
	}
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("AUDIT_RETENTION %s: want 0 or a positive duration", c.Retention))
	}
	if c.QueueSweepInterval <= 0 {
		errs = append(errs, fmt.Errorf("AUDIT_QUEUE_SWEEP_INTERVAL %s: want a positive duration", c.QueueSweepInterval))
	}
	if c.AckWait < 2*time.Second {
		errs = append(errs, fmt.Errorf("AUDIT_ACK_WAIT %s: want at least 2s", c.AckWait))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("audit configuration: %w", err)
	}
	return nil
}

// Run runs the audit until ctx is cancelled, then finishes the batch in
// hand and the queries received, and returns nil. It returns an error when
// it cannot start: bad configuration, database unreachable or its schema
// not migratable, consumer not creatable.
func Run(ctx context.Context, cfg Config, deps service.Deps) error {
	if err := cfg.check(); err != nil {
		return err
	}
	log := deps.Log.With("component", "audit")
	store, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.WarnContext(ctx, "close_database_failed", "error", err)
		}
	}()

	cons, err := bus.EnsureConsumer(ctx, deps.JS, bus.ConsumerOptions{
		Stream:  contract.StreamEvents,
		Durable: contract.ConsumerAudit,
		// No filter: the stream holds only request and download events and
		// the audit takes them all, in stream order. A filter naming both
		// subjects would make the server match every message against
		// several filters, which costs it most of the audit's throughput
		// once there are many requests (docs/benchmarks.md, Audit).
		AckWait: cfg.AckWait,
		// Unbounded: the audit never gives up on an event; a database
		// outage only delays it.
		MaxDeliver:    -1,
		MaxAckPending: max(4*cfg.BatchSize, 1000),
	})
	if err != nil {
		return err
	}
	stream, err := deps.JS.Stream(ctx, contract.StreamEvents)
	if err != nil {
		return fmt.Errorf("stream %s: %w", contract.StreamEvents, err)
	}
	rec := recorder.New(cons, stream, store, recorder.Options{
		BatchSize: cfg.BatchSize, BatchWait: cfg.BatchWait,
		RetryMin: cfg.RetryMin, RetryMax: cfg.RetryMax,
		ApplyTimeout: cfg.AckWait / 2,
	}, deps.Log.With("component", "audit_recorder"), deps.Tracer, deps.Registerer)
	// The audit, an observer of the whole system already, is the one
	// service that reports the work queue and the event stream.
	if err := bus.RegisterQueueMetrics(deps.Registerer, deps.JS, log, 0); err != nil {
		return err
	}
	sweeper := newQueueSweeper(deps.JS, store, cfg.QueueSweepInterval, deps.Log.With("component", "audit_queue_sweeper"), deps.Registerer)
	queries := history.New(store, deps.Log.With("component", "audit_history"), deps.Tracer, deps.Registerer)
	deps.Health.Add("database", func(ctx context.Context) error {
		if err := store.Ping(ctx); err != nil {
			return err
		}
		if err := rec.Err(); err != nil {
			return fmt.Errorf("last batch not stored: %w", err)
		}
		return nil
	})

	// The parts run side by side; the first to fail stops the others.
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return rec.Run(ctx) })
	g.Go(func() error { return queries.Serve(ctx, deps.NC) })
	g.Go(func() error {
		sweeper.run(ctx)
		return nil
	})
	if cfg.Retention > 0 {
		g.Go(func() error {
			purge(ctx, store, cfg.Retention, log)
			return nil
		})
	}
	log.InfoContext(ctx, "audit_started", "database", describe(cfg), "batch_size", cfg.BatchSize, "retention", cfg.Retention.String(), "queue_sweep_interval", cfg.QueueSweepInterval.String())
	err = g.Wait()
	log.InfoContext(ctx, "audit_stopped")
	return err
}

func openStore(ctx context.Context, cfg Config, log *slog.Logger) (*auditstore.Store, error) {
	if cfg.MySQLDSN != "" {
		s, err := auditstore.OpenMySQL(ctx, cfg.MySQLDSN, log)
		if err != nil {
			return nil, fmt.Errorf("audit database (mysql): %w", err)
		}
		return s, nil
	}
	s, err := auditstore.OpenSQLite(ctx, cfg.SQLitePath, log)
	if err != nil {
		return nil, fmt.Errorf("audit database (sqlite %s): %w", cfg.SQLitePath, err)
	}
	return s, nil
}

func describe(cfg Config) string {
	if cfg.MySQLDSN != "" {
		return "mysql"
	}
	return "sqlite:" + cfg.SQLitePath
}

// purge deletes expired requests and invalid events now and then until
// ctx is cancelled.
func purge(ctx context.Context, store *auditstore.Store, retention time.Duration, log *slog.Logger) {
	every := min(max(retention/10, time.Minute), time.Hour)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := store.Purge(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "purge_failed", "error", err)
		case n > 0:
			log.InfoContext(ctx, "requests_purged", "count", n, "retention", retention.String())
		}
		n, err = store.PurgeInvalid(ctx, time.Now().Add(-retention))
		switch {
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "purge_failed", "error", err)
		case n > 0:
			log.InfoContext(ctx, "invalid_events_purged", "count", n, "retention", retention.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
