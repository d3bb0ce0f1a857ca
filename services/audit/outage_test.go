package audit_test

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
)

// proxy forwards TCP connections to a target and can be cut: the listener
// closes (new connections are refused) and every open connection is torn
// down, as when the database host goes away. restore listens again on the
// same address.
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, target: target, addr: ln.Addr().String(), conns: map[net.Conn]bool{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *proxy) forward(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client, server) {
		return
	}
	var once sync.Once
	closeBoth := func() { once.Do(func() { client.Close(); server.Close() }) }
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		// The copy ends when either side or the cut closes a connection.
		_, _ = io.Copy(dst, src)
		closeBoth()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// track records a connection pair, or closes it if the proxy was cut
// meanwhile.
func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = true
	}
	return true
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

func count(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// The database goes away while 500 requests are processed: the audit stops
// acknowledging, reports not ready, and once the database is back every
// request is recorded, each event exactly once.
func TestMySQLOutageLosesNothing(t *testing.T) {
	dsn := testenv.MySQL(t)
	direct, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	mcfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, mcfg.Addr)
	mcfg.Addr = px.addr
	mcfg.Timeout = time.Second

	e := newEnv(t)
	cfg := sqliteConfig(t)
	cfg.SQLitePath, cfg.MySQLDSN = "", mcfg.FormatDSN()
	a := e.start(t, cfg)

	// Before the outage: recorded as usual.
	warmup := lifecycle(command("warm-up"), 0, false)
	publish(t, e.js, warmup...)
	testenv.Eventually(t, 15*time.Second, "the warm-up request to be stored", func() bool {
		return count(t, direct, "SELECT COUNT(*) FROM staging_events") == len(warmup)
	})

	px.cut()
	const n = 500
	var published []contract.Event
	for i := range n {
		// 1,500 events over 500 requests.
		published = append(published, lifecycle(command(fmt.Sprintf("req-%03d", i)), i, i%10 == 0)...)
	}
	publish(t, e.js, published...)
	testenv.Eventually(t, 15*time.Second, "the audit to see the database fail", func() bool {
		return metric(t, a.reg, "staging_audit_db_errors_total") >= 2
	})
	failed := a.health.Ready(t.Context())
	if _, ok := failed["database"]; !ok {
		t.Errorf("ready during the outage: failed checks %v, want database", failed)
	}
	if got := count(t, direct, "SELECT COUNT(*) FROM staging_requests"); got != 1 {
		t.Errorf("rows during the outage = %d, want only the warm-up", got)
	}

	px.restore()
	testenv.Eventually(t, 30*time.Second, "every request to be stored", func() bool {
		return count(t, direct, "SELECT COUNT(*) FROM staging_requests WHERE status IN ('succeeded', 'failed')") == n+1
	})
	if got, want := count(t, direct, "SELECT COUNT(*) FROM staging_events"), len(warmup)+len(published); got != want {
		t.Errorf("events stored = %d, want %d, each once", got, want)
	}
	if got, want := count(t, direct, "SELECT COUNT(*) FROM staging_requests WHERE status = 'failed'"), n/10; got != want {
		t.Errorf("failed requests = %d, want %d", got, want)
	}
	testenv.Eventually(t, 15*time.Second, "the audit to be ready again", func() bool {
		return len(a.health.Ready(t.Context())) == 0
	})
	testenv.Eventually(t, 15*time.Second, "every event to be acknowledged", func() bool {
		c, err := e.js.Consumer(t.Context(), contract.StreamEvents, contract.ConsumerAudit)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	// Every event of the outage was refused at least once and stored once.
	if got, want := metric(t, a.reg, "staging_audit_events_total", "result", "stored"), float64(len(warmup)+len(published)); got != want {
		t.Errorf("events stored (metric) = %v, want %v", got, want)
	}
	rec := query[contract.AuditGetReply](t, e.nc, contract.SubjectAuditGet, contract.AuditGetRequest{ID: "req-123"})
	if rec.Record == nil || rec.Record.Status != contract.StatusSucceeded {
		t.Errorf("req-123 = %+v, want succeeded", rec)
	}
	if t.Failed() {
		t.Logf("db errors: %v", metric(t, a.reg, "staging_audit_db_errors_total"))
	}
}

// Another process holds the SQLite write lock (a backup tool, an operator's
// shell) for longer than the busy timeout while 500 requests are processed:
// the audit reports not ready, keeps answering queries from the readers,
// and stores everything once the lock is released.
func TestSQLiteLockedLosesNothing(t *testing.T) {
	e := newEnv(t)
	cfg := sqliteConfig(t)
	a := e.start(t, cfg)

	locker, err := sql.Open("sqlite", cfg.SQLitePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { locker.Close() })
	conn, err := locker.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	const n = 500
	var published []contract.Event
	for i := range n {
		published = append(published, lifecycle(command(fmt.Sprintf("req-%03d", i)), i, false)...)
	}
	publish(t, e.js, published...)
	testenv.Eventually(t, 30*time.Second, "the audit to see the database fail", func() bool {
		return metric(t, a.reg, "staging_audit_db_errors_total") >= 1
	})
	if failed := a.health.Ready(t.Context()); failed["database"] == "" {
		t.Errorf("ready while the database is locked: failed checks %v", failed)
	}
	if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	testenv.Eventually(t, 60*time.Second, "every request to be stored", func() bool {
		return count(t, locker, "SELECT COUNT(*) FROM staging_requests WHERE status = 'succeeded'") == n
	})
	if got, want := count(t, locker, "SELECT COUNT(*) FROM staging_events"), len(published); got != want {
		t.Errorf("events stored = %d, want %d", got, want)
	}
	testenv.Eventually(t, 15*time.Second, "the audit to be ready again", func() bool {
		return len(a.health.Ready(t.Context())) == 0
	})
}
