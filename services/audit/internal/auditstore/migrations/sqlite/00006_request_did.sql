-- A request by DID keeps its DID (scope:name) in its row, as one by path
-- keeps local_path_on_storage. Rows recorded before take it from their
-- events; the files the DID was resolved into are in the request's
-- resolved events.

-- +goose Up
ALTER TABLE staging_requests ADD COLUMN did TEXT NOT NULL DEFAULT '';
UPDATE staging_requests SET did = COALESCE((
    SELECT substr(max(json_extract(e.payload, '$.did')), 1, 276)
    FROM staging_events e
    WHERE e.request_id = staging_requests.id AND e.payload LIKE '%"did"%'), '')
WHERE id IN (SELECT request_id FROM staging_events WHERE payload LIKE '%"did"%');

-- +goose Down
ALTER TABLE staging_requests DROP COLUMN did;
