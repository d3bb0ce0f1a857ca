-- The audit's permanent record: one row per staging request and one per
-- event. utf8mb4_bin makes ids and usernames compare byte for byte, so two
-- ids that differ only in case are two requests. DATETIME(6) keeps
-- microseconds; every time is UTC.

-- +goose Up
CREATE TABLE staging_requests (
    id                    VARCHAR(64)  NOT NULL,
    job_id                VARCHAR(64)  NOT NULL,
    method                VARCHAR(32)  NOT NULL,
    username              VARCHAR(64)  NOT NULL,
    local_path_on_storage TEXT         NOT NULL,
    relative_path         TEXT         NOT NULL,
    status                VARCHAR(16)  NOT NULL,
    outcome               VARCHAR(32)  NOT NULL,
    error_code            VARCHAR(64)  NOT NULL,
    error_reason          TEXT         NOT NULL,
    bytes                 BIGINT       NOT NULL,
    files                 BIGINT       NOT NULL,
    adler32               VARCHAR(16)  NOT NULL,
    origin                VARCHAR(128) NOT NULL,
    trace_id              VARCHAR(32)  NOT NULL,
    created_at            DATETIME(6)  NOT NULL,
    started_at            DATETIME(6)  NULL,
    finished_at           DATETIME(6)  NULL,
    updated_at            DATETIME(6)  NOT NULL,
    PRIMARY KEY (id),
    KEY staging_requests_created (created_at, id),
    KEY staging_requests_username (username, created_at, id),
    KEY staging_requests_status (status, created_at, id),
    KEY staging_requests_method (method, created_at, id),
    KEY staging_requests_job (job_id, created_at, id),
    KEY staging_requests_finished (finished_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE staging_events (
    event_id   VARCHAR(128) NOT NULL,
    request_id VARCHAR(64)  NOT NULL,
    type       VARCHAR(16)  NOT NULL,
    time       DATETIME(6)  NOT NULL,
    source     VARCHAR(128) NOT NULL,
    payload    JSON         NOT NULL,
    PRIMARY KEY (event_id),
    KEY staging_events_request (request_id, time)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- +goose Down
DROP TABLE staging_events;
DROP TABLE staging_requests;
