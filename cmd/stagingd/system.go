package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/service"
	"github.com/skao/skao-staging/services/audit"
	"github.com/skao/skao-staging/services/gateway"
	jupyterbridge "github.com/skao/skao-staging/services/jupyter-bridge"
	"github.com/skao/skao-staging/services/stager"
)

// config is the all-in-one's configuration: the shared settings, its own,
// and each service's. Services that need the same setting read the same
// variable (STAGING_SOURCE_ROOT, STAGING_ALLOWED_METHODS).
type config struct {
	service.Base
	DataDir    string `env:"DATA_DIR" envDefault:"./data" help:"directory for everything on disk: NATS store, sample storage, user areas, SQLite audit"`
	NATSListen string `env:"NATS_LISTEN" envDefault:"127.0.0.1:4222" help:"client address of the embedded NATS server (a free port is taken when it is in use)"`

	Gateway gateway.Config
	Stager  stager.Config
	Audit   audit.Config
	Jupyter jupyterbridge.Config
}

func loadConfig(args []string, out io.Writer) (config, error) {
	var cfg config
	if err := service.Load(&cfg, "stagingd", args, out); err != nil {
		return config{}, err
	}
	jupyterbridge.ApplyHubEnv(&cfg.Jupyter)
	return cfg, nil
}

// authOn tells whether the gateway authenticates its callers
// (STAGING_AUTH_MODE other than none, read as the gateway reads it). Then
// the embedded NATS server, a second door to the same data, is closed too.
func (c config) authOn() bool {
	m := strings.ToLower(c.Gateway.AuthMode)
	return m != "" && m != "none"
}

// system is the running all-in-one.
type system struct {
	cfg        config
	layout     layout
	natsURL    string
	natsKey    string // the nkey seed file that opens the embedded NATS server; empty when it is open
	notices    []string
	httpURL    string
	auditStore string
	rt         *service.Runtime
	nats       *server.Server // nil with an external NATS
	group      *errgroup.Group
}

// start brings everything up and returns once the services run.
func start(ctx context.Context, cfg config, logs io.Writer) (*system, error) {
	if cfg.NATSURL == "" && (cfg.NATSNkeyFile != "" || cfg.NATSCredsFile != "") {
		// The services reach the embedded server in-process, without
		// credentials; a key file set for it is a mistake to point out.
		return nil, errors.New("configuration: STAGING_NATS_NKEY_FILE and STAGING_NATS_CREDS_FILE are the credentials for an external NATS server (STAGING_NATS_URL); the embedded server needs none")
	}
	l, err := newLayout(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	dirNotice, err := l.prepare(cfg.authOn())
	if err != nil {
		return nil, err
	}
	sys := &system{cfg: cfg, layout: l}
	sys.addNotice(dirNotice)
	sys.applyLayoutDefaults()

	var natsOpts []nats.Option
	if cfg.NATSURL == "" {
		var clientNkey string
		if cfg.authOn() {
			if clientNkey, err = loadOrCreateNkey(l.NATSKey); err != nil {
				return nil, err
			}
			sys.natsKey = l.NATSKey
		}
		srv, notice, err := startNATS(cfg.NATSListen, l.NATS, clientNkey)
		if err != nil {
			return nil, err
		}
		sys.nats = srv
		sys.addNotice(notice)
		sys.cfg.NATSURL = srv.ClientURL()
		// The services reach the embedded server in-process: no network
		// hop, and no credentials needed when it is closed.
		natsOpts = append(natsOpts, nats.InProcessServer(srv))
	}
	sys.natsURL = sys.cfg.NATSURL

	rt, err := service.Start(ctx, "stagingd", sys.cfg.Base, logs, natsOpts...)
	if err != nil {
		sys.stopNATS()
		return nil, err
	}
	sys.rt = rt
	service.LogConfig(rt.Log, sys.cfg)

	ln, err := net.Listen("tcp", sys.cfg.Gateway.HTTPAddr)
	if err != nil {
		sys.close(ctx)
		return nil, fmt.Errorf("gateway listener on %s: %w", sys.cfg.Gateway.HTTPAddr, err)
	}
	sys.httpURL = "http://" + displayAddr(ln.Addr())

	// The gateway serves the stager's download links itself: one port.
	downloads, closeDownloads, err := stager.NewDownloadHandler(ctx, sys.cfg.Stager, rt.Deps)
	if err != nil {
		ln.Close()
		sys.close(ctx)
		return nil, err
	}
	handler, err := gateway.NewHandler(sys.cfg.Gateway, rt.Deps, gateway.WithDownloads(downloads))
	if err != nil {
		closeDownloads()
		ln.Close()
		sys.close(ctx)
		return nil, err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.StoppedEarly(gctx, stager.Run(gctx, sys.cfg.Stager, rt.Deps)) })
	g.Go(func() error { return service.StoppedEarly(gctx, audit.Run(gctx, sys.cfg.Audit, rt.Deps)) })
	g.Go(func() error { return service.StoppedEarly(gctx, jupyterbridge.Run(gctx, sys.cfg.Jupyter, rt.Deps)) })
	g.Go(func() error {
		err := service.ServeListener(gctx, rt.Log, "gateway", ln, handler, sys.cfg.Gateway.StageWaitTimeout+5*time.Second, rt.HTTP)
		return errors.Join(err, closeDownloads(), handler.Close())
	})
	sys.group = g
	sys.awaitWorkers(gctx)
	return sys, nil
}

func (s *system) addNotice(n string) {
	if n != "" {
		s.notices = append(s.notices, n)
	}
}

// awaitWorkers returns once the stager's and the jupyter-bridge's consumers
// exist (at once after a first start: they are durable), or the services
// stopped, or a while passed. The gateway refuses a method no worker takes,
// so a request sent the moment the all-in-one is up must not be refused for
// a worker that is still starting. A worker that cannot start stops the
// services, which wait reports.
func (s *system) awaitWorkers(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, durable := range []string{contract.ConsumerStager, contract.ConsumerJupyterBridge} {
		for {
			if _, err := s.rt.JS.Consumer(ctx, contract.StreamRequests, durable); err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}
}

// applyLayoutDefaults points every root the configuration leaves unset at
// the data directory.
func (s *system) applyLayoutDefaults() {
	c := &s.cfg
	if c.Stager.SourceRoot == "" {
		c.Stager.SourceRoot = s.layout.Storage
	}
	if c.Stager.UserAreaRoot == "" {
		c.Stager.UserAreaRoot = s.layout.UserArea
	}
	c.Gateway.SourceRoot = c.Stager.SourceRoot
	c.Gateway.UserAreaRoot = c.Stager.UserAreaRoot
	c.Jupyter.SourceRoot = c.Stager.SourceRoot
	c.Stager.DownloadAddr = "" // served through the gateway's port
	if c.Jupyter.HubURL == "" {
		// Without a hub the bridge rejects every jupyter_copy command;
		// the gateway refuses them at the door, before queueing any.
		c.Gateway.AllowedMethods = slices.DeleteFunc(slices.Clone(c.Gateway.AllowedMethods), func(m string) bool {
			return m == string(contract.MethodJupyterCopy)
		})
	}
	if c.Audit.SQLitePath == "" {
		c.Audit.SQLitePath = s.layout.AuditDB
	} else if !filepath.IsAbs(c.Audit.SQLitePath) {
		c.Audit.SQLitePath = filepath.Join(s.layout.Dir, c.Audit.SQLitePath)
	}
	if c.Audit.MySQLDSN != "" {
		s.auditStore = "MySQL (STAGING_MYSQL_DSN)"
	} else {
		s.auditStore = "SQLite " + c.Audit.SQLitePath
	}
}

// wait blocks until the services stop (the context ended or one failed),
// then shuts the rest down in order: services, then NATS client, then the
// embedded server.
func (s *system) wait() error {
	err := s.group.Wait()
	s.close(context.Background())
	return err
}

func (s *system) close(ctx context.Context) {
	if s.rt != nil {
		s.rt.Close(ctx)
	}
	s.stopNATS()
}

func (s *system) stopNATS() {
	if s.nats != nil {
		s.nats.Shutdown()
		s.nats.WaitForShutdown()
	}
}

// displayAddr turns a wildcard listener address into one a person can
// paste into a browser.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
