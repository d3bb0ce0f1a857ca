package stage

// SetAfterChunk makes s call fn after each chunk of a file it copies.
func SetAfterChunk(s *Stager, fn func(src string)) { s.afterChunk = fn }

// SetFlush makes s flush the user area with syncfs and fsync instead of
// syncfs(2) and fsync(2).
func SetFlush(s *Stager, syncfs, fsync func(fd int) error) {
	s.flush.syncfs, s.flush.fsync = syncfs, fsync
}

// TargetError is targetError, for the table of error classes.
var TargetError = targetError
