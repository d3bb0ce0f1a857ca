// Package testenv lets integration tests find the real services they need
// (an external NATS, MySQL/MariaDB, JupyterHub). A test whose service is
// missing is skipped with a visible message, or fails when
// STAGING_REQUIRE_INTEGRATION=1, as it is in CI. It also holds what tests
// of running services share: waiting for a condition, collecting output.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"

	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Required reports whether integration tests must run rather than skip.
func Required() bool { return os.Getenv("STAGING_REQUIRE_INTEGRATION") == "1" }

// Missing skips the test because what is absent, or fails it when
// integration tests are required.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("STAGING_REQUIRE_INTEGRATION=1 but %s", msg)
	}
	t.Skipf("SKIP (integration): %s", msg)
}

// Lookup returns the environment variable name, or handles its absence as
// Missing; what describes the service it points at.
func Lookup(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, "%s is not set: it names %s", name, what)
	}
	return v
}

// MySQL creates a fresh database on the server named by
// STAGING_TEST_MYSQL_DSN (a DSN without a database, such as
// "root:@tcp(127.0.0.1:3306)/"), drops it when the test ends, and returns a
// DSN for it.
func MySQL(t testing.TB) string {
	t.Helper()
	base := Lookup(t, "STAGING_TEST_MYSQL_DSN", "a MySQL/MariaDB server, e.g. root:@tcp(127.0.0.1:3306)/")
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("STAGING_TEST_MYSQL_DSN: %v", err)
	}
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		Missing(t, "MySQL at %s does not answer: %v", cfg.Addr, err)
	}
	name := "staging_test_" + randomSuffix(t)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE "+name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(hex.EncodeToString(b))
}

// Eventually checks cond every 20ms until it holds, and fails the test when
// it has not within timeout; what names the awaited state for the message,
// and lastSeen, if given, tells what was seen instead. cond runs on the
// test's goroutine, so it may call t.Fatal itself, e.g. when the process
// it waits for has ended.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool, lastSeen ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			seen := ""
			for _, f := range lastSeen {
				seen += "; last seen: " + f()
			}
			t.Fatalf("timed out after %s waiting for %s%s", timeout, what, seen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Buffer collects output written from several goroutines, such as the logs
// of a service under test.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
