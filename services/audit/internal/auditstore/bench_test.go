package auditstore_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/skao/skao-staging/libs/contract"
	"github.com/skao/skao-staging/libs/testenv"
	"github.com/skao/skao-staging/services/audit/internal/auditstore"
)

// BenchmarkApply measures the store alone: 100,000 events (queued, started,
// succeeded per request) applied in batches of 500.
func BenchmarkApply(b *testing.B) {
	const total, batch = 100_000, 500
	var events []contract.Event
	for i := 0; len(events) < total; i++ {
		c := cmd(fmt.Sprintf("req-%06d", i))
		evs := lifecycle(c)
		events = append(events, evs[0], evs[1], evs[3])
	}
	events = events[:total]
	open := map[string]func(b *testing.B) *auditstore.Store{
		"mysql": func(b *testing.B) *auditstore.Store {
			s, err := auditstore.OpenMySQL(b.Context(), testenv.MySQL(b), quiet)
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
		"sqlite": func(b *testing.B) *auditstore.Store {
			s, err := auditstore.OpenSQLite(b.Context(), filepath.Join(b.TempDir(), "audit.db"), quiet)
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
	for _, name := range []string{"mysql", "sqlite"} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				s := open[name](b)
				start := time.Now()
				for i := 0; i < len(events); i += batch {
					if _, err := s.Apply(b.Context(), auditstore.Batch{Events: events[i:min(i+batch, len(events))]}); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(events))/time.Since(start).Seconds(), "events/s")
				s.Close()
			}
		})
	}
}
