// Package contract is the one place that defines what the staging services
// exchange: NATS subjects, stream and consumer names, the command and event
// messages, the audit query messages, the stable error codes, and the
// validation every command goes through wherever it enters the system.
//
// Other systems depend on these definitions; change them only on purpose and
// bump SpecVersion when a message changes incompatibly.
package contract
