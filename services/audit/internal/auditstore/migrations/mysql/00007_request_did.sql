-- A request by DID keeps its DID (scope:name, at most 276 characters) in
-- its row, as one by path keeps local_path_on_storage. Rows recorded
-- before take it from their events; the files the DID was resolved into
-- are in the request's resolved events.

-- +goose Up
ALTER TABLE staging_requests ADD COLUMN did VARCHAR(276) NOT NULL DEFAULT '';
UPDATE staging_requests r
    JOIN (SELECT request_id, MAX(JSON_UNQUOTE(JSON_EXTRACT(payload, '$.did'))) AS did
          FROM staging_events
          WHERE payload LIKE '%"did"%' AND JSON_EXTRACT(payload, '$.did') IS NOT NULL
          GROUP BY request_id) e ON e.request_id = r.id
    SET r.did = LEFT(e.did, 276);

-- +goose Down
ALTER TABLE staging_requests DROP COLUMN did;
