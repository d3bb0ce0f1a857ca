-- The stored event is plain text, no longer of JSON type: the audit writes
-- only what it encoded itself, and checking (MariaDB) or converting (MySQL)
-- it again on every insert cost the server an eighth of its CPU on a
-- backlog (docs/benchmarks.md). JSON functions still read it. The server
-- copies the table once to change the column. SQLite keeps its TEXT
-- column with json_valid: it has no cost worth a rebuild of the table.

-- +goose Up
ALTER TABLE staging_events MODIFY payload LONGTEXT NOT NULL;

-- +goose Down
ALTER TABLE staging_events MODIFY payload JSON NOT NULL;
