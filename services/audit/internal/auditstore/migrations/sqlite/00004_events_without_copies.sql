-- The events table no longer copies the event's time and source into
-- columns of their own: nothing reads them there (the history reads the
-- payloads), and the MySQL/MariaDB schema dropped them to spare the server
-- two of the six values of every event row; the two schemas stay alike.
-- The request index keeps request_id alone.

-- +goose Up
DROP INDEX staging_events_request;
ALTER TABLE staging_events DROP COLUMN time;
ALTER TABLE staging_events DROP COLUMN source;
CREATE INDEX staging_events_request ON staging_events (request_id);

-- +goose Down
-- The columns come back filled from the payloads (times as the audit
-- writes them: UTC, "Z").
DROP INDEX staging_events_request;
ALTER TABLE staging_events ADD COLUMN time TEXT NOT NULL DEFAULT '';
ALTER TABLE staging_events ADD COLUMN source TEXT NOT NULL DEFAULT '';
UPDATE staging_events SET
    time = replace(replace(json_extract(payload, '$.time'), 'T', ' '), 'Z', ''),
    source = coalesce(json_extract(payload, '$.source'), '');
CREATE INDEX staging_events_request ON staging_events (request_id, time);
