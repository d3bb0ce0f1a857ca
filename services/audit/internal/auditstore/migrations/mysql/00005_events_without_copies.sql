-- The events table no longer copies the event's time and source into
-- columns of their own: nothing reads them there (the history reads the
-- payloads, and sorts on their full-precision times), and on a backlog
-- they were two of the six values of every event row the server takes
-- (docs/benchmarks.md). The request index keeps request_id alone. The
-- server may rebuild the table to drop the columns, while the audit, which
-- migrates before it consumes, waits; the events wait in the stream.

-- +goose Up
ALTER TABLE staging_events
    DROP INDEX staging_events_request,
    DROP COLUMN time,
    DROP COLUMN source,
    ADD KEY staging_events_request (request_id);

-- +goose Down
-- The columns come back filled from the payloads (times as the audit
-- writes them: UTC, "Z").
ALTER TABLE staging_events
    ADD COLUMN time DATETIME(6) NULL AFTER type,
    ADD COLUMN source VARCHAR(128) NOT NULL DEFAULT '' AFTER time;
UPDATE staging_events SET
    time = CAST(REPLACE(REPLACE(JSON_UNQUOTE(JSON_EXTRACT(payload, '$.time')), 'T', ' '), 'Z', '') AS DATETIME(6)),
    source = COALESCE(LEFT(JSON_UNQUOTE(JSON_EXTRACT(payload, '$.source')), 128), '');
ALTER TABLE staging_events
    MODIFY time DATETIME(6) NOT NULL,
    ALTER COLUMN source DROP DEFAULT,
    DROP INDEX staging_events_request,
    ADD KEY staging_events_request (request_id, time);
