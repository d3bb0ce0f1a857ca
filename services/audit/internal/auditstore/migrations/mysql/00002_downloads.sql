-- Download events of direct_download links share the events table with the
-- requests' own events (download_completed needs a wider type column), and
-- each request counts its completed downloads. A completed download is
-- counted when its event is first stored, so replays count nothing twice.

-- +goose Up
ALTER TABLE staging_events MODIFY type VARCHAR(32) NOT NULL;
ALTER TABLE staging_requests ADD COLUMN downloads BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE staging_requests DROP COLUMN downloads;
DELETE FROM staging_events WHERE type LIKE 'download%';
ALTER TABLE staging_events MODIFY type VARCHAR(16) NOT NULL;
