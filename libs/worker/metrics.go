package worker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/skao/skao-staging/libs/contract"
)

// metrics are the request metrics every worker keeps. What a service
// counts beyond them (bytes copied, hub calls) it registers itself.
type metrics struct {
	requests *prometheus.CounterVec
	// failures and exhausted break down the failed and rejected requests.
	failures  *prometheus.CounterVec
	exhausted *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	inFlight  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, prefix, source string, buckets []float64, methods contract.MethodSet) *metrics {
	if buckets == nil {
		buckets = prometheus.ExponentialBuckets(0.005, 4, 10)
	}
	auto := promauto.With(reg)
	m := &metrics{
		requests: auto.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_requests_total",
			Help: fmt.Sprintf("Requests handled by the %s, by method and outcome (staged, already_present, link_issued, failed, rejected, cancelled).", source),
		}, []string{"method", "outcome"}),
		failures: auto.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_failures_total",
			Help: fmt.Sprintf("Requests the %s ended as failed or rejected, by method, outcome (failed, rejected) and error code.", source),
		}, []string{"method", "outcome", "code"}),
		exhausted: auto.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_deliveries_exhausted_total",
			Help: fmt.Sprintf("Requests the %s ended as failed because no delivery of them finished (each crashed or was stopped) and the consumer's deliveries ran out, by method.", source),
		}, []string{"method"}),
		duration: auto.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prefix + "_duration_seconds",
			Help:    fmt.Sprintf("Time the %s spent on one delivery of a request, by method.", source),
			Buckets: buckets,
		}, []string{"method"}),
		inFlight: auto.NewGauge(prometheus.GaugeOpts{
			Name: prefix + "_in_flight",
			Help: fmt.Sprintf("Requests the %s is working on now.", source),
		}),
	}
	// From zero, so that an alert on their increase sees the first one.
	for _, method := range methods {
		m.requests.WithLabelValues(string(method), "failed")
		m.exhausted.WithLabelValues(string(method))
	}
	return m
}

// ended counts a request that failed or was rejected with code.
func (m *metrics) ended(method contract.Method, outcome string, code contract.Code) {
	label := metricMethod(method)
	m.requests.WithLabelValues(label, outcome).Inc()
	m.failures.WithLabelValues(label, outcome, string(code)).Inc()
}

// metricMethod keeps the method label's values bounded: a malformed
// command may name anything.
func metricMethod(m contract.Method) string {
	if _, err := contract.ParseMethod(string(m)); err != nil {
		return "invalid"
	}
	return string(m)
}
