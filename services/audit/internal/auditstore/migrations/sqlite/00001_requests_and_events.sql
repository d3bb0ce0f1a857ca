-- The audit's permanent record: one row per staging request and one per
-- event. Times are UTC text of one fixed width ("2006-01-02 15:04:05.000000"),
-- so comparing and sorting them as text orders them in time.

-- +goose Up
CREATE TABLE staging_requests (
    id                    TEXT    NOT NULL PRIMARY KEY,
    job_id                TEXT    NOT NULL,
    method                TEXT    NOT NULL,
    username              TEXT    NOT NULL,
    local_path_on_storage TEXT    NOT NULL,
    relative_path         TEXT    NOT NULL,
    status                TEXT    NOT NULL,
    outcome               TEXT    NOT NULL,
    error_code            TEXT    NOT NULL,
    error_reason          TEXT    NOT NULL,
    bytes                 INTEGER NOT NULL,
    files                 INTEGER NOT NULL,
    adler32               TEXT    NOT NULL,
    origin                TEXT    NOT NULL,
    trace_id              TEXT    NOT NULL,
    created_at            TEXT    NOT NULL,
    started_at            TEXT,
    finished_at           TEXT,
    updated_at            TEXT    NOT NULL
);
CREATE INDEX staging_requests_created ON staging_requests (created_at, id);
CREATE INDEX staging_requests_username ON staging_requests (username, created_at, id);
CREATE INDEX staging_requests_status ON staging_requests (status, created_at, id);
CREATE INDEX staging_requests_method ON staging_requests (method, created_at, id);
CREATE INDEX staging_requests_job ON staging_requests (job_id, created_at, id);
CREATE INDEX staging_requests_finished ON staging_requests (finished_at);

CREATE TABLE staging_events (
    event_id   TEXT NOT NULL PRIMARY KEY,
    request_id TEXT NOT NULL,
    type       TEXT NOT NULL,
    time       TEXT NOT NULL,
    source     TEXT NOT NULL,
    payload    TEXT NOT NULL CHECK (json_valid(payload))
);
CREATE INDEX staging_events_request ON staging_events (request_id, time);

-- +goose Down
DROP TABLE staging_events;
DROP TABLE staging_requests;
