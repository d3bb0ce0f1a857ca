-- Messages the audit refused to record because they break the event rules
-- (docs/messages.md): kept apart from the requests and their events, for
-- inspection. The message is kept as received, its first 64 KiB, as bytes
-- (it need not be UTF-8). stream_seq and digest (SHA-256 of the whole
-- message) name one message of the stream, so a redelivery or a replay
-- stores it once.

-- +goose Up
CREATE TABLE staging_invalid_events (
    id           BIGINT          NOT NULL AUTO_INCREMENT,
    stream_seq   BIGINT UNSIGNED NOT NULL,
    digest       CHAR(64)        NOT NULL,
    subject      VARCHAR(512)    NOT NULL,
    code         VARCHAR(64)     NOT NULL,
    reason       TEXT            NOT NULL,
    size         BIGINT          NOT NULL,
    payload      MEDIUMBLOB      NOT NULL,
    published_at DATETIME(6)     NOT NULL,
    received_at  DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY staging_invalid_events_message (stream_seq, digest),
    KEY staging_invalid_events_received (received_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE staging_invalid_events;
