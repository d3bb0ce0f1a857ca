-- Download events of direct_download links share the events table with the
-- requests' own events (TEXT needs no widening), and each request counts
-- its completed downloads. A completed download is counted when its event
-- is first stored, so replays count nothing twice.

-- +goose Up
ALTER TABLE staging_requests ADD COLUMN downloads INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE staging_requests DROP COLUMN downloads;
DELETE FROM staging_events WHERE type LIKE 'download%';
