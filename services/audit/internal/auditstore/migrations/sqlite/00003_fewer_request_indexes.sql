-- Fewer indexes for every request row to keep up to date. The method
-- filter of the list queries reads the created_at index instead (a
-- method is common, so a page fills after a short scan), and retention
-- finds finished requests by created_at too (a request finishes no
-- earlier than its first event). The username, job and status indexes
-- stay: a user's or a job's requests are few among many, and so are, say,
-- the failed ones.

-- +goose Up
DROP INDEX staging_requests_method;
DROP INDEX staging_requests_finished;

-- +goose Down
CREATE INDEX staging_requests_method ON staging_requests (method, created_at, id);
CREATE INDEX staging_requests_finished ON staging_requests (finished_at);
