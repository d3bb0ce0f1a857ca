package auditstore

import "context"

// DownTo undoes the migrations past version (their Down sections), as
// rolling the audit's database back would: the tests of a migration
// that fills a new column so go back to the database as it was before.
func (s *Store) DownTo(ctx context.Context, version int64) error {
	p, err := s.migrator()
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}
