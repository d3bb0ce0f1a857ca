package audit

// SetBeforeExpire makes f run between the sweeper's read of a request's
// last event and the publish of its failed event, until restore is
// called. Set it before the audit starts, restore it after it stopped.
func SetBeforeExpire(f func(id string)) (restore func()) {
	beforeExpire = f
	return func() { beforeExpire = nil }
}
