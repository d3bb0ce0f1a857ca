-- Messages the audit refused to record because they break the event rules
-- (docs/messages.md): kept apart from the requests and their events, for
-- inspection. The message is kept as received, its first 64 KiB, as bytes
-- (it need not be UTF-8). stream_seq and digest (SHA-256 of the whole
-- message) name one message of the stream, so a redelivery or a replay
-- stores it once.

-- +goose Up
CREATE TABLE staging_invalid_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_seq   INTEGER NOT NULL,
    digest       TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    code         TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    size         INTEGER NOT NULL,
    payload      BLOB    NOT NULL,
    published_at TEXT    NOT NULL,
    received_at  TEXT    NOT NULL
);
CREATE UNIQUE INDEX staging_invalid_events_message ON staging_invalid_events (stream_seq, digest);
CREATE INDEX staging_invalid_events_received ON staging_invalid_events (received_at);

-- +goose Down
DROP TABLE staging_invalid_events;
