// Package stager is the service that carries out the filesystem staging
// methods (local_copy, local_symlink, local_hardlink, direct_download): a
// durable JetStream consumer of their commands, and an HTTP listener that
// serves the download links it issues.
package stager

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/rucio"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/libs/storage"
	"github.com/skao/skao-staging/libs/worker"
	"github.com/skao/skao-staging/services/stager/internal/downloads"
	"github.com/skao/skao-staging/services/stager/internal/expiry"
	"github.com/skao/skao-staging/services/stager/internal/ownership"
	"github.com/skao/skao-staging/services/stager/internal/quota"
	"github.com/skao/skao-staging/services/stager/internal/stage"
)

// DownloadPath is the route of a download link on the stager's listener
// (and, by convention, on the gateway that proxies it).
const DownloadPath = downloads.PathPrefix + "{token}"

// Config is the stager's configuration (environment variables with the
// STAGING_ prefix, or the matching flags). The settings of the stager's
// consumer and copies start STAGER_, as the bridge's start JUPYTER_; the
// names they had before stay deprecated aliases for one release
// (envDeprecated, see service.Load).
type Config struct {
	SourceRoot     string        `env:"SOURCE_ROOT" help:"the storage mount requests stage from (required), e.g. /mnt/storage_a"`
	UserAreaRoot   string        `env:"USER_AREA_ROOT" help:"the user area; items go to <USER_AREA_ROOT>/<username>/<relative_path> (required)"`
	AllowedMethods []string      `env:"ALLOWED_METHODS" envDefault:"local_copy,local_symlink,local_hardlink,direct_download" envSeparator:"," help:"staging methods allowed at this site"`
	Concurrency    int           `env:"STAGER_CONCURRENCY" envDefault:"32" help:"requests staged at once (small copies staged together share their disk flushes)"`
	MaxAckPending  int           `env:"STAGER_MAX_ACK_PENDING" envDefault:"1000" help:"requests out at once to all stagers together (a site-wide limit on the shared consumer; each stager takes at most STAGER_CONCURRENCY); set the same on every stager"`
	CopyWorkers    int           `env:"STAGER_COPY_WORKERS" envDeprecated:"COPY_WORKERS" envDefault:"4" help:"files of one directory tree copied at once"`
	AckWait        time.Duration `env:"STAGER_ACK_WAIT" envDefault:"30s" help:"how long a delivery may go unacknowledged before redelivery"`
	MaxDeliver     int           `env:"STAGER_MAX_DELIVER" envDefault:"5" help:"deliveries of one request before it fails"`
	StageTimeout   time.Duration `env:"STAGER_STAGE_TIMEOUT" envDeprecated:"STAGE_TIMEOUT" envDefault:"6h" help:"longest one delivery of a request may take"`
	// SyncCopies is on by default: a copy is on disk before it has its
	// name, so not even a machine crash leaves a named copy with missing
	// data. Copies waiting at the same time share one syncfs; a copy alone,
	// or a file over 16 MiB, is fsynced. Off, copies go at the page
	// cache's speed.
	SyncCopies   bool          `env:"STAGER_SYNC_COPIES" envDeprecated:"SYNC_COPIES" envDefault:"true" help:"write each copy, then its rename, to disk before reporting it done; false is faster, but a machine crash soon after can leave a copy named with data missing"`
	DownloadAddr string        `env:"DOWNLOAD_ADDR" envDefault:":8081" help:"listen address for download links; empty for none"`
	DownloadTTL  time.Duration `env:"DOWNLOAD_TTL" envDefault:"1h" help:"lifetime of a download link"`
	// DefaultLifetime and MaxLifetime bound how long staged items stay
	// (a request's lifetime); 0 keeps them for ever.
	DefaultLifetime time.Duration `env:"DEFAULT_LIFETIME" envDefault:"0s" help:"how long an item staged by local_copy, local_symlink or local_hardlink stays when the request names no lifetime; 0 keeps it for ever"`
	MaxLifetime     time.Duration `env:"MAX_LIFETIME" envDefault:"0s" help:"the longest lifetime of a staged item; a longer one (or for ever) is cut to it; 0 for no bound"`
	UserQuota       int64         `env:"USER_QUOTA" envDefault:"0" help:"bytes each user may hold in the user area; a local_copy that would go over fails with quota_exceeded; 0 for no quota"`
	UserQuotaFile   string        `env:"USER_QUOTA_FILE" help:"file of \"username bytes\" lines overriding STAGING_USER_QUOTA per user (0: no quota for that user)"`
	// DownloadSendfile is on by default. Which path is faster depends on
	// the machine (docs/benchmarks.md), so the buffered copy stays a
	// setting.
	DownloadSendfile bool          `env:"DOWNLOAD_SENDFILE" envDefault:"true" help:"serve downloaded files with sendfile(2); false copies them through a 2 MiB buffer"`
	Ownership        string        `env:"OWNERSHIP" envDefault:"none" help:"who owns staged data: none (the stager), passwd (the user, looked up through os/user) or map (from OWNERSHIP_MAP_FILE)"`
	OwnershipMap     string        `env:"OWNERSHIP_MAP_FILE" help:"file of \"username uid:gid\" lines, for OWNERSHIP=map"`
	ShutdownGrace    time.Duration `env:"SHUTDOWN_GRACE" envDefault:"10s" help:"how long open downloads may take to finish at shutdown"`
	// Rucio resolves a request's DID (STAGING_RUCIO_*).
	Rucio rucio.Config
}

// Run stages requests until ctx is cancelled, then stops taking new ones,
// finishes those in hand and returns nil. It fails when it cannot start.
//
// In order: the roots and settings are checked and opened, the copy engine
// is built and clears what crashed copies left, then the worker (the
// JetStream consumer), the expiry keeper (the consumer of due expiries) and
// the download listener run side by side until ctx ends or one fails, which
// stops the others.
func Run(ctx context.Context, cfg Config, deps service.Deps) error {
	log := deps.Log.With("component", "stager")
	allowed, err := contract.ParseMethodSet(cfg.AllowedMethods)
	if err != nil {
		return fmt.Errorf("allowed methods: %w", err)
	}
	owners, err := ownership.New(cfg.Ownership, cfg.OwnershipMap)
	if err != nil {
		return err
	}
	quotas, err := quota.Load(cfg.UserQuota, cfg.UserQuotaFile)
	if err != nil {
		return err
	}
	source, err := storage.Open(cfg.SourceRoot)
	if err != nil {
		return fmt.Errorf("source root (STAGING_SOURCE_ROOT): %w", err)
	}
	defer source.Close()
	if cfg.UserAreaRoot == "" {
		return errors.New("user area root (STAGING_USER_AREA_ROOT) is not set")
	}
	users, err := os.OpenRoot(cfg.UserAreaRoot)
	if err != nil {
		return fmt.Errorf("user area root (STAGING_USER_AREA_ROOT): %w", err)
	}
	defer users.Close()
	links, err := downloads.OpenStore(ctx, deps.JS, cfg.DownloadTTL)
	if err != nil {
		return err
	}

	tracer := deps.Tracer.Tracer("skao-staging/stager")
	st := &stage.Stager{
		Source: source, Users: users, Owners: owners, Quotas: quotas, Workers: cfg.CopyWorkers, Tracer: tracer,
		NoSync: !cfg.SyncCopies,
		// The copy meter samples more often than the worker publishes, so
		// the worker's spacing of progress events sets the pace.
		ProgressEvery: worker.DefaultProgressEvery / 4,
	}
	if st.Rucio, err = openRucio(cfg.Rucio); err != nil {
		return err
	}
	// What a crashed copy left is removed when its request is delivered
	// again; this removes what no delivery will come back for. A copy
	// younger than the longest a delivery may take may be another
	// stager's, still going.
	if n, err := st.CleanLeftovers(ctx, max(cfg.StageTimeout, cfg.AckWait)); err != nil {
		log.WarnContext(ctx, "leftovers_not_removed", "removed", n, "error", err)
	} else if n > 0 {
		log.InfoContext(ctx, "leftovers_removed", "removed", n)
	}

	expiries := &expiry.Keeper{
		JS: deps.JS, Users: users, Default: cfg.DefaultLifetime, Max: cfg.MaxLifetime,
		Log: log.With("component", "expiry"), Source: "stager", AckWait: cfg.AckWait,
	}
	work := newMethods(deps.Registerer, links, st, expiries)
	w, err := worker.New(worker.Options{
		Source:        "stager",
		Methods:       contract.StagerMethods,
		Allowed:       allowed,
		Stage:         work.stage,
		JS:            deps.JS,
		Log:           log,
		Tracer:        tracer,
		Registerer:    deps.Registerer,
		MetricPrefix:  "staging_stager",
		Durable:       contract.ConsumerStager,
		Concurrency:   cfg.Concurrency,
		MaxAckPending: cfg.MaxAckPending,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		Timeout:       cfg.StageTimeout,
	})
	if err != nil {
		return err
	}
	if err := registerUserAreaMetrics(deps.Registerer, cfg.UserAreaRoot); err != nil {
		return err
	}
	deps.Health.Add("stager_storage", storageCheck(source, users))

	g, ctx := errgroup.WithContext(ctx)
	if cfg.DownloadAddr != "" {
		h, events := newDownloadHandler(links, source, st.Rucio, cfg, deps)
		g.Go(func() error {
			err := service.Serve(ctx, log, "downloads", cfg.DownloadAddr, h, cfg.ShutdownGrace, deps.HTTP)
			// The downloads that ended meanwhile still reach the audit.
			events.Close(cfg.ShutdownGrace)
			return err
		})
	}
	g.Go(func() error { return w.Run(ctx) })
	g.Go(func() error { return expiries.Run(ctx) })
	log.InfoContext(ctx, "stager_started", "source_root", source.Dir(), "user_area_root", cfg.UserAreaRoot, "methods", fmt.Sprint(allowed))
	return g.Wait()
}

// NewDownloadHandler returns the handler of download links, for a process
// that mounts it on a listener of its own (set DownloadAddr empty then). The
// returned close function, called once the listener serves no more,
// publishes the download events still queued and releases the storage.
func NewDownloadHandler(ctx context.Context, cfg Config, deps service.Deps) (http.Handler, func() error, error) {
	source, err := storage.Open(cfg.SourceRoot)
	if err != nil {
		return nil, nil, fmt.Errorf("source root (STAGING_SOURCE_ROOT): %w", err)
	}
	links, err := downloads.OpenStore(ctx, deps.JS, cfg.DownloadTTL)
	if err != nil {
		return nil, nil, errors.Join(err, source.Close())
	}
	catalogue, err := openRucio(cfg.Rucio)
	if err != nil {
		return nil, nil, errors.Join(err, source.Close())
	}
	h, events := newDownloadHandler(links, source, catalogue, cfg, deps)
	closeAll := func() error {
		events.Close(max(cfg.ShutdownGrace, time.Second))
		return source.Close()
	}
	return h, closeAll, nil
}

// newDownloadHandler builds the handler of download links, which lists a
// DID's files from catalogue (nil: no Rucio), and the reporter of their
// events; close the reporter once the handler serves no more.
func newDownloadHandler(links *downloads.Store, source *storage.Root, catalogue downloads.Catalogue, cfg Config, deps service.Deps) (*downloads.Handler, *downloads.Reporter) {
	log := deps.Log.With("component", "downloads")
	events := downloads.NewReporter(deps.JS, "stager", log, deps.Registerer)
	return downloads.NewHandler(links, source, catalogue, events, log, deps.Tracer.Tracer("skao-staging/stager"), deps.Registerer, cfg.DownloadSendfile), events
}

// openRucio returns the client of the site's Rucio, or nil when none is
// configured: a request by DID is then refused.
func openRucio(cfg rucio.Config) (stage.Catalogue, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	c, err := rucio.New(cfg, nil)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// storageCheck reports the stager ready while both roots can be read.
func storageCheck(source *storage.Root, users *os.Root) func(context.Context) error {
	return func(context.Context) error {
		if _, err := source.OS().Stat("."); err != nil {
			return fmt.Errorf("source root: %w", err)
		}
		if _, err := users.Stat("."); err != nil {
			return fmt.Errorf("user area root: %w", err)
		}
		return nil
	}
}

// methods carries out the stager's methods for the shared worker, and
// counts what they stage.
type methods struct {
	stager       *stage.Stager
	links        *downloads.Store
	expiries     *expiry.Keeper
	bytes, files prometheus.Counter
}

func newMethods(reg prometheus.Registerer, links *downloads.Store, s *stage.Stager, expiries *expiry.Keeper) *methods {
	counters := promauto.With(reg)
	return &methods{
		stager:   s,
		links:    links,
		expiries: expiries,
		bytes: counters.NewCounter(prometheus.CounterOpts{
			Name: "staging_stager_bytes_total",
			Help: "Bytes copied or linked by the stager.",
		}),
		files: counters.NewCounter(prometheus.CounterOpts{
			Name: "staging_stager_files_total",
			Help: "Files copied or linked by the stager.",
		}),
	}
}

// stage is the stager's worker.StageFunc.
func (m *methods) stage(ctx context.Context, cmd contract.Command, report *worker.Reporter) (worker.Result, error) {
	var r worker.Result
	var err error
	switch cmd.Method {
	case contract.MethodLocalCopy:
		r, err = m.stager.Copy(ctx, cmd, report)
	case contract.MethodLocalSymlink, contract.MethodLocalHardlink:
		r, err = m.link(ctx, cmd, report)
	case contract.MethodDirectDownload:
		return m.issueLink(ctx, cmd, report)
	default:
		return worker.Result{}, contract.Errorf(contract.CodeInvalidMethod, "the stager does not carry out %q", cmd.Method)
	}
	if err != nil {
		return worker.Result{}, err
	}
	// Before the succeeded event: a failure here is retried, and the
	// item is then already present.
	sctx, span := m.stager.Tracer.Start(ctx, "stager.schedule_expiry")
	r.ExpiresAt, err = m.expiries.Schedule(sctx, cmd, r.Outcome)
	span.End()
	if err != nil {
		return worker.Result{}, err
	}
	if r.Outcome == contract.OutcomeStaged {
		m.bytes.Add(float64(r.Bytes))
		m.files.Add(float64(r.Files))
	}
	return r, nil
}

// link carries out local_symlink and local_hardlink, of a path or a DID.
func (m *methods) link(ctx context.Context, cmd contract.Command, report *worker.Reporter) (worker.Result, error) {
	switch {
	case cmd.DID != "":
		return m.stager.LinkDID(ctx, cmd, report)
	case cmd.Method == contract.MethodLocalSymlink:
		return m.stager.Symlink(ctx, cmd)
	default:
		return m.stager.Hardlink(ctx, cmd)
	}
}

// issueLink carries out direct_download: it checks the source and issues
// a link to it. A file DID is resolved to its path first; a dataset or a
// container is checked whole, file by file, and its link keeps the DID,
// whose files the link lists again to serve them as one tar archive.
func (m *methods) issueLink(ctx context.Context, cmd contract.Command, report *worker.Reporter) (worker.Result, error) {
	link := downloads.Link{Username: cmd.Username, RequestID: cmd.ID}
	var r worker.Result
	switch {
	case cmd.DID != "":
		d, err := m.stager.DownloadOfDID(ctx, cmd, report)
		if err != nil {
			return worker.Result{}, err
		}
		r.Files, r.Bytes = d.Files, d.Bytes
		if d.Path != "" {
			link.Path = d.Path
			r.Message = fmt.Sprintf("download link issued for file %s", cmd.DID)
			break
		}
		if _, err := downloads.ArchiveName(cmd.DID); err != nil {
			return worker.Result{}, err
		}
		link.DID = cmd.DID
		r.Message = fmt.Sprintf("download link issued for %s %s (as a tar archive)", strings.ToLower(string(d.Kind)), cmd.DID)
	default:
		rel, fi, err := m.stager.Check(ctx, cmd)
		if err != nil {
			return worker.Result{}, err
		}
		link.Path = rel
		what := "file"
		if fi.IsDir() {
			what = "directory (as a tar archive)"
		}
		r.Message = fmt.Sprintf("download link issued for %s %s", what, cmd.LocalPathOnStorage)
	}
	url, expires, err := m.links.Issue(ctx, link)
	if err != nil {
		return worker.Result{}, fmt.Errorf("issue download link: %w", err)
	}
	r.Outcome, r.DownloadURL, r.ExpiresAt = contract.OutcomeLinkIssued, url, expires
	return r, nil
}
