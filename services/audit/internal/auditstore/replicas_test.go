package auditstore_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// Two replicas store the events of the same new requests at the same time:
// one the queued and started events, the other progress and succeeded. The
// second to commit must merge into the row the first inserted, not
// overwrite it (which would lose created_at and started_at).
func TestReplicasMergeTheSameNewRequests(t *testing.T) {
	shared := []struct {
		name string
		open func(t *testing.T) (a, b *auditstore.Store)
	}{
		{"sqlite", func(t *testing.T) (a, b *auditstore.Store) {
			path := filepath.Join(t.TempDir(), "audit.db")
			return openSQLite(t, path), openSQLite(t, path)
		}},
		{"mysql", func(t *testing.T) (a, b *auditstore.Store) {
			dsn := testenv.MySQL(t)
			return openMySQL(t, dsn), openMySQL(t, dsn)
		}},
	}
	for _, tt := range shared {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tt.open(t)
			const rounds, perRound = 20, 40
			var want []contract.Record
			for round := range rounds {
				var first, second []contract.Event
				for i := range perRound {
					c := cmd(fmt.Sprintf("req-%02d-%02d", round, i))
					evs := lifecycle(c)
					first = append(first, evs[0], evs[1])
					second = append(second, evs[2], evs[3])
					want = append(want, succeededRecord(c))
				}
				var wg sync.WaitGroup
				errs := make([]error, 2)
				wg.Go(func() { _, errs[0] = a.Apply(t.Context(), auditstore.Batch{Events: first}) })
				wg.Go(func() { _, errs[1] = b.Apply(t.Context(), auditstore.Batch{Events: second}) })
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("round %d, replica %d: Apply: %v", round, i, err)
					}
				}
			}
			var got []contract.Record
			for _, r := range want {
				got = append(got, get(t, a, r.ID))
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("records (-got +want):\n%s", diff)
			}
		})
	}
}

// Replicas starting together migrate the same fresh MySQL database: one
// applies the migrations, the others wait for it and find nothing to do.
func TestReplicasMigrateTogether(t *testing.T) {
	dsn := testenv.MySQL(t)
	const replicas = 4
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for i := range replicas {
		wg.Go(func() {
			s, err := auditstore.OpenMySQL(t.Context(), dsn, quiet)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: OpenMySQL: %v", i, err)
		}
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var applied []int64
	rows, err := db.QueryContext(t.Context(), "SELECT version_id FROM goose_db_version WHERE version_id > 0 ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		applied = append(applied, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	// Each migration once, whichever replica applied it.
	if diff := cmp.Diff(applied, []int64{1, 2, 3, 4, 5, 6, 7, 8}); diff != "" {
		t.Errorf("migrations applied (-got +want):\n%s", diff)
	}
}
