-- Delivery semantics: group policy (attempts, backoff, ordered), retries, dead letters,
-- delayed messages, ordered topics.

ALTER TABLE consumer_groups
  ADD COLUMN max_delivery_attempts int NOT NULL DEFAULT 16
    CHECK (max_delivery_attempts BETWEEN 1 AND 1000),
  -- Backoff of RETRY by attempt (the last entry repeats): RocketMQ's schedule by default.
  ADD COLUMN backoff_ms bigint[] NOT NULL DEFAULT '{10000,30000,60000,120000,180000,240000,
    300000,360000,420000,480000,540000,600000,1200000,1800000,3600000,7200000}',
  -- Exponential instead when backoff_min_ms > 0: min * 2^(attempt-1), at most backoff_max_ms.
  ADD COLUMN backoff_min_ms bigint NOT NULL DEFAULT 0 CHECK (backoff_min_ms >= 0),
  ADD COLUMN backoff_max_ms bigint NOT NULL DEFAULT 0 CHECK (backoff_max_ms >= 0),
  ADD COLUMN ordered boolean NOT NULL DEFAULT false,
  ADD COLUMN start_latest boolean NOT NULL DEFAULT false;

ALTER TABLE topics ADD COLUMN ordered boolean NOT NULL DEFAULT false;

-- delivered: leased to a consumer until deadline (then due again: a failed attempt);
-- retrying:  RETRY was asked; due again at deadline;
-- redriven:  put back from the dead letters (attempt 0); due at deadline;
-- in_txn:    ACKed inside a transaction not decided yet (deadline infinity: held).
ALTER TABLE group_leases
  ADD COLUMN state text NOT NULL DEFAULT 'delivered'
    CHECK (state IN ('delivered', 'retrying', 'redriven', 'in_txn'));

-- Messages a group gave up on, with a copy of the message (it outlives retention and topic
-- deletion) and why. Redrive or purge them with ferryctl dlq.
CREATE TABLE dead_letters (
  dead_letter_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  group_id           bigint NOT NULL REFERENCES consumer_groups ON DELETE CASCADE,
  topic_id           bigint NOT NULL,
  topic              text NOT NULL,
  queue_id           int NOT NULL,
  msg_offset         bigint NOT NULL,
  key                text,
  payload            bytea,              -- NULL: retention removed the message first
  headers            jsonb NOT NULL DEFAULT '{}',
  produced_at        timestamptz,
  attempts           int NOT NULL,
  reason             text NOT NULL,
  first_delivered_at timestamptz NOT NULL,
  last_delivered_at  timestamptz NOT NULL,
  dead_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_group ON dead_letters (group_id, dead_letter_id);
CREATE INDEX dead_letters_position ON dead_letters (group_id, topic_id, queue_id);

-- Messages produced with a delay wait here and are moved into their topic's queues when due,
-- exactly once (the move deletes the row and appends the message in one transaction).
CREATE TABLE delayed_messages (
  delayed_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic_id    bigint NOT NULL REFERENCES topics ON DELETE CASCADE,
  key         text,
  payload     bytea NOT NULL,
  headers     jsonb NOT NULL DEFAULT '{}',
  dedup_id    text,
  deliver_at  timestamptz NOT NULL,
  produced_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delayed_messages_due ON delayed_messages (deliver_at);

-- A dedup entry of a delayed message points at it until it is moved into a queue.
ALTER TABLE dedup
  ALTER COLUMN queue_id DROP NOT NULL,
  ALTER COLUMN msg_offset DROP NOT NULL,
  ADD COLUMN delayed_id bigint;

DROP VIEW group_lag;
CREATE VIEW group_lag AS
SELECT g.name AS group_name,
       t.name AS topic,
       gq.queue_id,
       q.next_offset AS end_offset,
       c.committed_offset,
       gq.delivered_offset,
       s.in_flight,
       s.retrying,
       q.next_offset - c.committed_offset AS lag,
       (SELECT now() - m.produced_at FROM messages m
         WHERE m.topic_id = gq.topic_id AND m.queue_id = gq.queue_id
           AND m.msg_offset = c.committed_offset) AS oldest_unacked_age,
       (SELECT count(*) FROM dead_letters d
         WHERE d.group_id = gq.group_id AND d.topic_id = gq.topic_id
           AND d.queue_id = gq.queue_id) AS dead_letters
FROM group_queues gq
JOIN consumer_groups g USING (group_id)
JOIN queues q USING (topic_id, queue_id)
JOIN topics t USING (topic_id)
CROSS JOIN LATERAL (
  SELECT COALESCE((SELECT min(l.msg_offset) FROM group_leases l
                    WHERE l.group_id = gq.group_id AND l.topic_id = gq.topic_id
                      AND l.queue_id = gq.queue_id), gq.delivered_offset) AS committed_offset
) c
CROSS JOIN LATERAL (
  SELECT count(*) FILTER (WHERE l.state IN ('delivered', 'in_txn')) AS in_flight,
         count(*) FILTER (WHERE l.state IN ('retrying', 'redriven')) AS retrying
  FROM group_leases l
  WHERE l.group_id = gq.group_id AND l.topic_id = gq.topic_id AND l.queue_id = gq.queue_id
) s;
