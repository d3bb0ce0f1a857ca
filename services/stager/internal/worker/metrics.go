package worker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the stager's request metrics.
type Metrics struct {
	requests *prometheus.CounterVec
	bytes    prometheus.Counter
	files    prometheus.Counter
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_stager_requests_total",
			Help: "Requests handled by the stager, by method and outcome (staged, already_present, link_issued, failed, rejected).",
		}, []string{"method", "outcome"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "staging_stager_bytes_total",
			Help: "Bytes copied or linked by the stager.",
		}),
		files: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "staging_stager_files_total",
			Help: "Files copied or linked by the stager.",
		}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "staging_stager_duration_seconds",
			Help:    "Time the stager spent on one delivery of a request, by method.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 10),
		}, []string{"method"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "staging_stager_in_flight",
			Help: "Requests the stager is working on now.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.bytes, m.files, m.duration, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register stager metrics: %w", err)
		}
	}
	return m, nil
}
