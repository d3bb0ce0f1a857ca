package stagings

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/skao/skao-staging/libs/contract"
)

// How long the gateway trusts what it learnt of the site's workers. A
// method found served is trusted for workersTTL; a method found unserved
// is looked up again after workersRetry, so a worker that has just
// started is seen at once, and a stream of refused requests costs at most
// one look-up a second.
const (
	workersTTL   = 10 * time.Second
	workersRetry = time.Second
)

// workers knows which command subjects a worker at the site takes: those a
// consumer of STAGING_REQUESTS filters on. A durable consumer outlives its
// worker's restarts, so a method whose worker is down for a moment is still
// served (its commands wait in the queue); a method nobody consumes would
// wait there for good.
type workers struct {
	js jetstream.JetStream

	mu      sync.Mutex
	filters []string // "" stands for a consumer without filter: every subject
	at      time.Time
}

// serves reports whether a consumer takes the commands of m.
func (w *workers) serves(ctx context.Context, m contract.Method) (bool, error) {
	subject := contract.RequestSubject(m)
	w.mu.Lock()
	defer w.mu.Unlock()
	age := time.Since(w.at)
	if age < workersTTL && matchesAny(w.filters, subject) {
		return true, nil
	}
	if age < workersRetry {
		return false, nil
	}
	filters, err := consumerFilters(ctx, w.js)
	if err != nil {
		return false, err
	}
	w.filters, w.at = filters, time.Now()
	return matchesAny(filters, subject), nil
}

// consumerFilters lists the filter subjects of every consumer of
// STAGING_REQUESTS.
func consumerFilters(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	s, err := js.Stream(ctx, contract.StreamRequests)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", contract.StreamRequests, err)
	}
	var filters []string
	list := s.ListConsumers(ctx)
	for info := range list.Info() {
		switch {
		case info.Config.FilterSubject != "":
			filters = append(filters, info.Config.FilterSubject)
		case len(info.Config.FilterSubjects) > 0:
			filters = append(filters, info.Config.FilterSubjects...)
		default:
			filters = append(filters, "")
		}
	}
	if err := list.Err(); err != nil {
		return nil, fmt.Errorf("list the consumers of %s: %w", contract.StreamRequests, err)
	}
	return filters, nil
}

func matchesAny(filters []string, subject string) bool {
	for _, f := range filters {
		if f == "" || subjectMatches(f, subject) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether NATS subject filter (with * and >
// wildcards) matches subject.
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) || (f != "*" && f != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}
