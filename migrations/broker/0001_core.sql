-- Ferry broker schema: topics, queues, messages, dedup, consumer groups and their leases.
-- Everything a person wants to inspect is a table with plain column names.

-- Key material shared by every broker process on this database (receipt signatures).
CREATE TABLE broker_meta (
  key   text PRIMARY KEY,
  value bytea NOT NULL
);
INSERT INTO broker_meta (key, value)
VALUES ('receipt_hmac_key',
        decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'));

CREATE TABLE topics (
  topic_id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name            text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,128}$'),
  queue_count     int NOT NULL CHECK (queue_count BETWEEN 1 AND 256),
  retention_ms    bigint NOT NULL CHECK (retention_ms > 0),
  dedup_window_ms bigint NOT NULL CHECK (dedup_window_ms > 0),
  created_at      timestamptz NOT NULL DEFAULT now()
);

-- Messages are stored in time segments (default one hour; all brokers read the setting here),
-- one partition of `messages` each, so retention drops whole partitions instead of deleting
-- rows (no dead tuples, no vacuum debt; PgQ's table rotation is the model).
CREATE TABLE broker_settings (
  key   text PRIMARY KEY,
  value bigint NOT NULL
);
INSERT INTO broker_settings (key, value) VALUES ('segment_seconds', 3600);

CREATE FUNCTION ferry_current_segment() RETURNS int LANGUAGE sql STABLE AS $$
  SELECT floor(extract(epoch FROM now()) /
               (SELECT value FROM broker_settings WHERE key = 'segment_seconds'))::int
$$;

-- One row per queue. next_offset is the offset the next message gets. A producing transaction
-- locks the row (SELECT ... FOR UPDATE) from the moment it takes offsets until it commits, so
-- transactions appending to one queue commit in offset order: a reader never sees offset k+1
-- committed while k is not. Offsets are dense: 0, 1, 2, ...
-- first_offset: nothing below it is stored any more (retention); readers start there.
-- segment: the time segment this queue last wrote into.
CREATE TABLE queues (
  topic_id     bigint NOT NULL REFERENCES topics ON DELETE CASCADE,
  queue_id     int NOT NULL,
  next_offset  bigint NOT NULL DEFAULT 0,
  first_offset bigint NOT NULL DEFAULT 0,
  segment      int NOT NULL DEFAULT -1,
  PRIMARY KEY (topic_id, queue_id)
);

-- Append-only message store: rows are inserted once and removed only by retention (whole
-- segments) or topic deletion; delivery state lives in the small tables below. The primary key
-- leads with (topic, queue, offset): reads are index range scans by offset.
CREATE TABLE messages (
  topic_id    bigint NOT NULL,
  queue_id    int NOT NULL,
  msg_offset  bigint NOT NULL,
  segment     int NOT NULL,
  key         text,                       -- NULL: produced without a key
  payload     bytea NOT NULL,
  headers     jsonb NOT NULL DEFAULT '{}',
  dedup_id    text,
  produced_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (topic_id, queue_id, msg_offset, segment)
) PARTITION BY RANGE (segment);
-- No DEFAULT partition on purpose: it would forbid DETACH PARTITION CONCURRENTLY. Brokers create
-- partitions ahead (ferry_ensure_segments); a produce that finds none creates it and retries.

-- The first offset each queue wrote in each segment: tells a reader which segments hold an
-- offset range (partition pruning), and retention which topics a segment holds.
CREATE TABLE queue_segments (
  topic_id     bigint NOT NULL,
  queue_id     int NOT NULL,
  segment      int NOT NULL,
  first_offset bigint NOT NULL,
  PRIMARY KEY (topic_id, queue_id, segment),
  FOREIGN KEY (topic_id, queue_id) REFERENCES queues ON DELETE CASCADE
);
CREATE INDEX queue_segments_segment ON queue_segments (segment);

-- Creates the partitions of the current segment and the next `ahead` ones if missing. Cheap
-- when they exist (no lock taken), so producers may call it on a queue's first write into a
-- segment, as a fallback for the broker's maintenance, which creates them ahead.
CREATE FUNCTION ferry_ensure_segments(ahead int DEFAULT 2) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
  s int;
  made int := 0;
BEGIN
  FOR s IN SELECT generate_series(ferry_current_segment(), ferry_current_segment() + ahead) LOOP
    IF to_regclass('messages_s' || s) IS NULL THEN
      PERFORM pg_advisory_xact_lock(hashtext('ferry_ensure_segments'));
      IF to_regclass('messages_s' || s) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF messages FOR VALUES FROM (%s) TO (%s)',
                       'messages_s' || s, s, s + 1);
        made := made + 1;
      END IF;
    END IF;
  END LOOP;
  RETURN made;
END
$$;
SELECT ferry_ensure_segments();

-- A dedup_id seen in a topic, and where its message went. Kept until expires_at (the topic's
-- dedup window after the first send); a later send with the same id before then is a duplicate.
CREATE TABLE dedup (
  topic_id   bigint NOT NULL REFERENCES topics ON DELETE CASCADE,
  dedup_id   text NOT NULL,
  queue_id   int NOT NULL,
  msg_offset bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  PRIMARY KEY (topic_id, dedup_id)
);
CREATE INDEX dedup_expires_at ON dedup (expires_at);

CREATE TABLE consumer_groups (
  group_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name       text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9._-]{1,128}$'),
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A group's progress on one queue. Every offset below delivered_offset has been handed out at
-- least once; those not yet settled are in group_leases. The committed offset (everything
-- below it is settled) is derived, not stored: the lowest leased offset, or delivered_offset
-- when nothing is leased (see group_lag). Storing it would make every commit lock this row.
CREATE TABLE group_queues (
  group_id         bigint NOT NULL REFERENCES consumer_groups ON DELETE CASCADE,
  topic_id         bigint NOT NULL,
  queue_id         int NOT NULL,
  delivered_offset bigint NOT NULL,
  PRIMARY KEY (group_id, topic_id, queue_id),
  FOREIGN KEY (topic_id, queue_id) REFERENCES queues ON DELETE CASCADE
);

-- Messages delivered to a group and not yet committed (small, churning state). lease_token
-- identifies one delivery: a receipt whose token no longer matches is stale.
CREATE SEQUENCE lease_token_seq;
CREATE TABLE group_leases (
  group_id           bigint NOT NULL,
  topic_id           bigint NOT NULL,
  queue_id           int NOT NULL,
  msg_offset         bigint NOT NULL,
  attempt            int NOT NULL,
  lease_token        bigint NOT NULL,
  deadline           timestamptz NOT NULL,
  first_delivered_at timestamptz NOT NULL,
  last_delivered_at  timestamptz NOT NULL,
  PRIMARY KEY (group_id, topic_id, queue_id, msg_offset),
  FOREIGN KEY (group_id, topic_id, queue_id) REFERENCES group_queues ON DELETE CASCADE
);
CREATE INDEX group_leases_deadline ON group_leases (group_id, topic_id, deadline);

-- One line per group and queue: what a person asks first ("how far behind is my group?").
CREATE VIEW group_lag AS
SELECT g.name AS group_name,
       t.name AS topic,
       gq.queue_id,
       q.next_offset AS end_offset,
       c.committed_offset,
       gq.delivered_offset,
       (SELECT count(*) FROM group_leases l
         WHERE l.group_id = gq.group_id AND l.topic_id = gq.topic_id
           AND l.queue_id = gq.queue_id) AS in_flight,
       q.next_offset - c.committed_offset AS lag,
       (SELECT now() - m.produced_at FROM messages m
         WHERE m.topic_id = gq.topic_id AND m.queue_id = gq.queue_id
           AND m.msg_offset = c.committed_offset) AS oldest_unacked_age
FROM group_queues gq
JOIN consumer_groups g USING (group_id)
JOIN queues q USING (topic_id, queue_id)
JOIN topics t USING (topic_id)
CROSS JOIN LATERAL (
  SELECT COALESCE((SELECT min(l.msg_offset) FROM group_leases l
                    WHERE l.group_id = gq.group_id AND l.topic_id = gq.topic_id
                      AND l.queue_id = gq.queue_id), gq.delivered_offset) AS committed_offset
) c;
