-- A request's row says when its staged item is removed, or when its
-- direct_download link ends: the expires_at of its succeeded event and,
-- once it expired, of its expired event (when the removal was due). NULL:
-- kept for ever, or nothing staged. Rows recorded before take it from the
-- event that set their status, succeeded or expired, as the audit would
-- have. The events hold RFC 3339 times, "Z" or an offset, with up to nine
-- digits of fraction; the column keeps them as the audit writes times:
-- UTC, microseconds.

-- +goose Up
ALTER TABLE staging_requests ADD COLUMN expires_at TEXT;
UPDATE staging_requests SET expires_at = e.expires_at
FROM (SELECT request_id, type,
             max(datetime(substr(v, 1, 19) || zone) || '.' ||
                 substr(iif(substr(v, 20, 1) = '.', substr(v, 21), '') || '000000', 1, 6)) AS expires_at
      FROM (SELECT request_id, type,
                   iif(substr(s, -1) = 'Z', substr(s, 1, length(s) - 1), substr(s, 1, length(s) - 6)) AS v,
                   iif(substr(s, -1) = 'Z', 'Z', substr(s, -6)) AS zone
            FROM (SELECT request_id, type, json_extract(payload, '$.expires_at') AS s
                  FROM staging_events
                  WHERE type IN ('succeeded', 'expired') AND json_type(payload, '$.expires_at') = 'text'))
      GROUP BY request_id, type) AS e
WHERE e.request_id = staging_requests.id AND e.type = staging_requests.status;

-- +goose Down
ALTER TABLE staging_requests DROP COLUMN expires_at;
