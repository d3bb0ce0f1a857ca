// Package backoff is the one back-off of the project: the delay before
// the next attempt doubles with each failed attempt, up to a cap. Every
// retry loop (redeliveries, reconnections, database retries, hub polls)
// takes its delays from here, so they all grow the same way.
package backoff

import "time"

// Exponential doubles the delay per attempt from Base, capped at Max.
type Exponential struct {
	Base time.Duration // delay after the first failed attempt
	Max  time.Duration // longest delay
}

// Delay is the wait after the attempt-th failed attempt (1 for the first):
// Base, 2×Base, 4×Base, … up to Max. An attempt below 1 counts as the
// first; a Max below Base is Base.
func (e Exponential) Delay(attempt int) time.Duration {
	d := e.Base
	for i := 1; i < attempt && d < e.Max; i++ {
		d *= 2
	}
	return max(min(d, e.Max), e.Base)
}
