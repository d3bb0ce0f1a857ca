// Package telemetry wires what every service reports about itself:
// structured JSON logs (log/slog) carrying the trace id, OpenTelemetry
// tracing configured from the standard OTEL_* variables, and the
// Prometheus registry with /healthz, /readyz and /metrics.
package telemetry
