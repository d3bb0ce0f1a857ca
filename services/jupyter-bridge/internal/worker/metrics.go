package worker

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the jupyter-bridge's metrics.
type Metrics struct {
	requests      *prometheus.CounterVec
	hubCalls      *prometheus.CounterVec
	hubDuration   *prometheus.HistogramVec
	serverStarts  prometheus.Counter
	startDuration prometheus.Histogram
	bytes         prometheus.Counter
	files         prometheus.Counter
	duration      prometheus.Histogram
	inFlight      prometheus.Gauge
}

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_jupyter_requests_total",
			Help: "jupyter_copy requests handled, by outcome (staged, already_present, failed, rejected).",
		}, []string{"outcome"}),
		hubCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "staging_jupyter_hub_calls_total",
			Help: "HTTP calls to JupyterHub and users' servers, by endpoint and status code (error: no response).",
		}, []string{"endpoint", "status"}),
		hubDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "staging_jupyter_hub_call_duration_seconds",
			Help:    "Duration of HTTP calls to JupyterHub and users' servers, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.005, 4, 9),
		}, []string{"endpoint"}),
		serverStarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "staging_jupyter_server_starts_total",
			Help: "Users' Jupyter servers the bridge had to start.",
		}),
		startDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "staging_jupyter_server_start_duration_seconds",
			Help:    "Time from asking for a user's server until it was ready.",
			Buckets: prometheus.ExponentialBuckets(0.25, 2, 10),
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "staging_jupyter_uploaded_bytes_total",
			Help: "Bytes of staged items uploaded into users' Jupyter servers.",
		}),
		files: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "staging_jupyter_uploaded_files_total",
			Help: "Files uploaded into users' Jupyter servers.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "staging_jupyter_duration_seconds",
			Help:    "Time the bridge spent on one delivery of a request.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "staging_jupyter_in_flight",
			Help: "Requests the bridge is working on now.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.hubCalls, m.hubDuration, m.serverStarts, m.startDuration, m.bytes, m.files, m.duration, m.inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register jupyter-bridge metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveHubCall is a hubclient.Observer.
func (m *Metrics) ObserveHubCall(endpoint, status string, d time.Duration) {
	m.hubCalls.WithLabelValues(endpoint, status).Inc()
	m.hubDuration.WithLabelValues(endpoint).Observe(d.Seconds())
}
