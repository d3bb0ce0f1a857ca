-- A request's row says when its staged item is removed, or when its
-- direct_download link ends: the expires_at of its succeeded event and,
-- once it expired, of its expired event (when the removal was due). NULL:
-- kept for ever, or nothing staged. Rows recorded before take it from the
-- event that set their status, succeeded or expired, as the audit would
-- have. The events hold RFC 3339 times, "Z" or an offset, with up to nine
-- digits of fraction; the column keeps microseconds, in UTC.

-- +goose Up
ALTER TABLE staging_requests ADD COLUMN expires_at DATETIME(6) NULL;
UPDATE staging_requests r
    JOIN (SELECT request_id, type,
                 MAX(CAST(REPLACE(LEFT(v, 26), 'T', ' ') AS DATETIME(6)) - INTERVAL offset_minutes MINUTE) AS expires_at
          FROM (SELECT request_id, type,
                       IF(RIGHT(s, 1) = 'Z', LEFT(s, CHAR_LENGTH(s) - 1), LEFT(s, CHAR_LENGTH(s) - 6)) AS v,
                       IF(RIGHT(s, 1) = 'Z', 0,
                          IF(LEFT(RIGHT(s, 6), 1) = '-', -1, 1) *
                          (CAST(SUBSTRING(RIGHT(s, 5), 1, 2) AS SIGNED) * 60 + CAST(RIGHT(s, 2) AS SIGNED))) AS offset_minutes
                FROM (SELECT request_id, type, JSON_UNQUOTE(JSON_EXTRACT(payload, '$.expires_at')) AS s
                      FROM staging_events
                      WHERE type IN ('succeeded', 'expired')
                        AND JSON_TYPE(JSON_EXTRACT(payload, '$.expires_at')) = 'STRING') x) t
          GROUP BY request_id, type) e ON e.request_id = r.id AND e.type = r.status
    SET r.expires_at = e.expires_at;

-- +goose Down
ALTER TABLE staging_requests DROP COLUMN expires_at;
