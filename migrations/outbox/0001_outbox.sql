-- The transactional outbox, in the APPLICATION's database. Insert rows in the same transaction
-- as your business data; ferry-relay publishes them to the broker.
--
--   INSERT INTO ferry_outbox (topic, key, payload) VALUES ('orders', 'order-42', '{"id":42}');
--
-- status: pending (not yet published, or waiting for a retry), sent, failed (a person looks:
-- ferry_outbox_requeue / ferry_outbox_skip), skipped.
CREATE TABLE ferry_outbox (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),  -- the broker's dedup_id, the
                                                               -- consumer's inbox key
  topic           text NOT NULL,
  key             text,                       -- same key: published in commit order
  key_seq         bigint,                     -- set by the trigger: order of commits per key
  payload         bytea NOT NULL,
  headers         jsonb NOT NULL DEFAULT '{}',
  created_at      timestamptz NOT NULL DEFAULT now(),
  writer_xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),  -- for back-checks and forensics
  status          text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
  attempts        int NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  claimed_by      text,                       -- the relay publishing it now ...
  claimed_until   timestamptz,                -- ... until then (a crashed relay's claim expires)
  last_error      text,
  sent_at         timestamptz,
  broker_queue    int,
  broker_offset   bigint
);
-- Only open rows are indexed for the relay's scans: they stay small whatever the retention.
CREATE INDEX ferry_outbox_due ON ferry_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX ferry_outbox_key_head ON ferry_outbox (key, key_seq)
  WHERE status IN ('pending', 'failed');
CREATE INDEX ferry_outbox_sent ON ferry_outbox (sent_at) WHERE status = 'sent';
ALTER TABLE ferry_outbox SET (autovacuum_vacuum_scale_factor = 0.0,
                              autovacuum_vacuum_threshold = 5000);

-- Per key, the last sequence number given out. The inserting transaction holds this row's lock
-- until it commits, so rows of one key get key_seq in commit order (a rolled-back insert gives
-- its number back).
CREATE TABLE ferry_outbox_key_seq (
  key      text PRIMARY KEY,
  last_seq bigint NOT NULL
);

CREATE FUNCTION ferry_outbox_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.key IS NOT NULL THEN
    INSERT INTO ferry_outbox_key_seq (key, last_seq) VALUES (NEW.key, 1)
      ON CONFLICT (key) DO UPDATE SET last_seq = ferry_outbox_key_seq.last_seq + 1
      RETURNING last_seq INTO NEW.key_seq;
  END IF;
  PERFORM pg_notify('ferry_outbox', '');  -- wakes the relay at commit (once per transaction)
  RETURN NEW;
END
$$;
CREATE TRIGGER ferry_outbox_before_insert BEFORE INSERT ON ferry_outbox
  FOR EACH ROW EXECUTE FUNCTION ferry_outbox_before_insert();

-- For a person: put a failed row back in line, or give up on it (with a reason).
CREATE FUNCTION ferry_outbox_requeue(row_id uuid) RETURNS boolean LANGUAGE sql AS $$
  UPDATE ferry_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(),
         last_error = 'requeued by ' || current_user || ': ' || COALESCE(last_error, '')
  WHERE id = row_id AND status = 'failed' RETURNING true
$$;
CREATE FUNCTION ferry_outbox_skip(row_id uuid, reason text) RETURNS boolean LANGUAGE sql AS $$
  UPDATE ferry_outbox SET status = 'skipped',
         last_error = 'skipped by ' || current_user || ': ' || reason
  WHERE id = row_id AND status IN ('failed', 'pending') RETURNING true
$$;

-- What a person asks first.
CREATE VIEW ferry_outbox_health AS
SELECT status, count(*) AS rows, min(created_at) AS oldest, max(attempts) AS max_attempts
FROM ferry_outbox GROUP BY status;

-- Consumer side: messages a consumer group already processed (the inbox). Insert the message id
-- in the same transaction as the handler's effects; a duplicate delivery finds it and skips.
CREATE TABLE ferry_inbox (
  consumer_group text NOT NULL,
  message_id     text NOT NULL,
  processed_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (consumer_group, message_id)
);
