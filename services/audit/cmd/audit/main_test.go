package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/natstest"
	"github.com/skao/skao-staging/libs/testenv"
)

// The test binary doubles as the audit binary: started with
// AUDIT_TEST_AS_MAIN=1 it runs main, so the tests can start the real
// process and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("AUDIT_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func startAudit(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), append(env, "AUDIT_TEST_AS_MAIN=1")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("audit output:\n%s", out)
		}
	})
	return cmd
}

func count(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), query).Scan(&n); err != nil {
		// The table appears once the process has migrated.
		return -1
	}
	return n
}

// The audit process is killed (SIGKILL) while it works through a backlog
// and started again: every event is stored once, none is lost.
func TestKilledMidBatchLosesNothing(t *testing.T) {
	url := natstest.Start(t)
	_, js := natstest.Connect(t, url)
	const n, perRequest = 2000, 3
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	msgs := make([]*nats.Msg, 0, perRequest*n)
	for i := range n {
		c := contract.Command{SpecVersion: contract.SpecVersion, ID: fmt.Sprintf("req-%04d", i), Method: contract.MethodLocalCopy,
			Username: "alice", LocalPathOnStorage: "a", RelativePath: "b"}
		for j, typ := range []contract.EventType{contract.EventQueued, contract.EventStarted, contract.EventSucceeded} {
			ev := contract.EventFor(c, typ)
			ev.ID, ev.Source, ev.Time = fmt.Sprintf("%s-%d", c.ID, j), "test", base.Add(time.Duration(i)*time.Millisecond)
			if typ == contract.EventSucceeded {
				ev.Outcome = contract.OutcomeStaged
			}
			m := nats.NewMsg(contract.EventSubject(c.ID))
			m.Header.Set(jetstream.MsgIDHeader, ev.ID)
			m.Data = mustJSON(t, ev)
			msgs = append(msgs, m)
		}
	}
	natstest.PublishAll(t, js, msgs)

	path := filepath.Join(t.TempDir(), "audit.db")
	env := []string{
		"STAGING_NATS_URL=" + url, "STAGING_SQLITE_PATH=" + path, "STAGING_MYSQL_DSN=",
		"STAGING_OPS_ADDR=127.0.0.1:0", "STAGING_AUDIT_ACK_WAIT=2s", "STAGING_AUDIT_BATCH_SIZE=50",
		"STAGING_AUDIT_RETRY_MIN=50ms", "STAGING_LOG_LEVEL=warn",
	}
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	first := startAudit(t, env...)
	testenv.Eventually(t, 30*time.Second, "the first process to store some events", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM staging_events") > 200
	})
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait() // killed: the exit status says so
	stored := count(t, db, "SELECT COUNT(*) FROM staging_events")
	if stored >= perRequest*n {
		t.Fatalf("the first process stored all %d events before it was killed; the test proves nothing", stored)
	}
	t.Logf("killed after %d of %d events", stored, perRequest*n)

	second := startAudit(t, env...)
	testenv.Eventually(t, 60*time.Second, "every event to be stored", func() bool {
		return count(t, db, "SELECT COUNT(*) FROM staging_events") == perRequest*n
	})
	if got := count(t, db, "SELECT COUNT(*) FROM staging_requests WHERE status = 'succeeded'"); got != n {
		t.Errorf("succeeded requests = %d, want %d", got, n)
	}
	testenv.Eventually(t, 30*time.Second, "every event to be acknowledged", func() bool {
		c, err := js.Consumer(t.Context(), contract.StreamEvents, contract.ConsumerAudit)
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	if err := second.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("audit after SIGINT: %v, want a clean exit", err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
