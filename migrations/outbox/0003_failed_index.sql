-- Failed rows are rare and wait for a person; this index lets ferry-relay's metrics count them
-- (ferry_relay_outbox_rows{status="failed"}) without reading the sent rows kept for retention.
CREATE INDEX ferry_outbox_failed ON ferry_outbox (created_at) WHERE status = 'failed';
