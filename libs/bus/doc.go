// Package bus is the JetStream plumbing every service shares: connecting
// (and refusing servers too old for the contract), declaring the streams
// and durable consumers idempotently, publishing commands and events with
// their message id and the W3C trace context in NATS headers, and the one
// acknowledgement policy every consumer follows.
package bus
