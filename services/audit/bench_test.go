package audit_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/cputime"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/audit"
)

const backlog = 100_000

// backlogEvents is a realistic backlog: queued, started and succeeded for
// each of backlog/3 requests.
func backlogEvents() []contract.Event {
	var out []contract.Event
	for i := 0; len(out) < backlog; i++ {
		c := command(fmt.Sprintf("req-%06d", i))
		c.JobID = fmt.Sprintf("job-%04d", i/100)
		out = append(out, lifecycle(c, i, i%20 == 0)...)
	}
	return out[:backlog]
}

// BenchmarkBacklogIntoMySQL measures events per second from a backlog of
// 100,000 events on STAGING_EVENTS into MariaDB/MySQL, through the whole
// audit: fetch, decode, one transaction per batch, acknowledge.
//
//	STAGING_TEST_MYSQL_DSN='root:@tcp(127.0.0.1:3306)/' go test -run '^$' -bench BacklogIntoMySQL -benchtime 1x .
func BenchmarkBacklogIntoMySQL(b *testing.B) {
	for _, size := range []int{500, 2000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			for b.Loop() {
				benchBacklog(b, size)
			}
		})
	}
}

func benchBacklog(b *testing.B, batchSize int) {
	dsn := testenv.MySQL(b)
	e := newEnv(b)
	events := backlogEvents()
	msgs := make([]*nats.Msg, 0, len(events))
	for _, ev := range events {
		data, err := json.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg(contract.EventSubject(ev.RequestID))
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		m.Data = data
		msgs = append(msgs, m)
	}
	natstest.PublishAll(b, e.js, msgs)
	cfg := audit.Config{MySQLDSN: dsn, BatchSize: batchSize, BatchWait: 200 * time.Millisecond, RetryMin: time.Second, RetryMax: time.Second, AckWait: time.Minute, QueueSweepInterval: time.Minute}

	start, cpu0 := time.Now(), machineCPU(b)
	a := e.start(b, cfg)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	// Done when the consumer has nothing left to deliver or to be
	// acknowledged: the audit acknowledges a batch only once committed.
	// Asking NATS, not the database, keeps the polling off the server
	// being measured.
	cons, err := e.js.Consumer(b.Context(), contract.StreamEvents, contract.ConsumerAudit)
	if err != nil {
		b.Fatal(err)
	}
	testenv.Eventually(b, 5*time.Minute, "the backlog to be stored and acknowledged", func() bool {
		info, err := cons.Info(b.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= uint64(len(events))
	})
	elapsed, cpu := time.Since(start), machineCPU(b)-cpu0
	a.stop()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM staging_events").Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != len(events) {
		b.Fatalf("%d events stored, want %d", n, len(events))
	}
	reportRate(b, len(events), elapsed, cpu)
}

// machineCPU is the CPU time of the whole machine so far: the database
// server's work counts, as well as this process's.
func machineCPU(b *testing.B) time.Duration {
	d, err := cputime.Machine()
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// reportRate reports events per second and the machine's CPU time per
// event (all processes, all cores: the database server and, for the
// audit, this process with its NATS server). Two cores' worth of time
// divided by the latter bounds the rate this machine can reach.
func reportRate(b *testing.B, events int, elapsed, cpu time.Duration) {
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(events), "machine-cpu-us/event")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkPlainInsertsMySQL is the ceiling the audit is compared with: a
// plain loop of 100-row INSERTs of the same 100,000 events into a table of
// the same shape, each statement autocommitted.
func BenchmarkPlainInsertsMySQL(b *testing.B) {
	for b.Loop() {
		db, err := sql.Open("mysql", testenv.MySQL(b)+"?parseTime=true")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Exec(`CREATE TABLE plain_events (event_id VARCHAR(128) NOT NULL PRIMARY KEY, request_id VARCHAR(64) NOT NULL,
			type VARCHAR(16) NOT NULL, time DATETIME(6) NOT NULL, source VARCHAR(128) NOT NULL, payload JSON NOT NULL,
			KEY plain_events_request (request_id, time)) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin`); err != nil {
			b.Fatal(err)
		}
		events := backlogEvents()
		start, cpu0 := time.Now(), machineCPU(b)
		const rows = 100
		q := "INSERT INTO plain_events VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", rows), ", ")
		for i := 0; i < len(events); i += rows {
			args := make([]any, 0, rows*6)
			for _, ev := range events[i : i+rows] {
				payload, err := json.Marshal(ev)
				if err != nil {
					b.Fatal(err)
				}
				args = append(args, ev.ID, ev.RequestID, string(ev.Type), ev.Time, ev.Source, string(payload))
			}
			if _, err := db.Exec(q, args...); err != nil {
				b.Fatal(err)
			}
		}
		elapsed, cpu := time.Since(start), machineCPU(b)-cpu0
		db.Close()
		reportRate(b, len(events), elapsed, cpu)
	}
}
