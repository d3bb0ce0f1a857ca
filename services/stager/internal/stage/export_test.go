package stage

// SetAfterChunk makes s call fn after each chunk of a file it copies.
func SetAfterChunk(s *Stager, fn func(src string)) { s.afterChunk = fn }

// SetSyncfs makes s flush the user area with fn instead of syncfs(2).
func SetSyncfs(s *Stager, fn func(fd int) error) { s.flush.syncfs = fn }
