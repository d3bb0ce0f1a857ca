package stage

// SetAfterChunk makes s call fn after each chunk of a file it copies.
func SetAfterChunk(s *Stager, fn func(src string)) { s.afterChunk = fn }
