-- Range leases: a Consume that hands out never-delivered messages of a queue records one row
-- for the whole batch (its first and end offset, one lease token, one deadline), not one lease
-- row per message. An ACK of a range's message adds its offset to `settled`; the row goes
-- when every offset is settled. Anything else that happens to one message of a range (RETRY,
-- DEAD_LETTER, an ACK inside a transaction, a lease extension, the deadline passing) first
-- takes it out of the range into a group_leases row with the same token, attempt and
-- deadline, and is then handled as before. A per-message lease row always wins over a range
-- (a range never holds an offset that has a lease row: taking it out settles it in the range).
-- Ordered groups and topics do not use ranges.
-- Measured on W2 (issue 15): 3.5 us of PostgreSQL per message for the lease row insert and
-- 5.6 us for its delete, replaced by one insert and one delete per batch.
CREATE TABLE group_ranges (
  group_id     bigint NOT NULL,
  topic_id     bigint NOT NULL,
  queue_id     int NOT NULL,
  first_offset bigint NOT NULL,
  end_offset   bigint NOT NULL CHECK (end_offset > first_offset),  -- exclusive
  lease_token  bigint NOT NULL,
  deadline     timestamptz NOT NULL,
  delivered_at timestamptz NOT NULL,
  settled      bigint[] NOT NULL DEFAULT '{}',  -- ACKed, or taken out into group_leases
  PRIMARY KEY (group_id, topic_id, queue_id, first_offset)
);
CREATE INDEX group_ranges_due ON group_ranges (group_id, topic_id, deadline);

-- Deleting a group's position (group or topic deleted) deletes its ranges too.
CREATE OR REPLACE FUNCTION ferry_group_queues_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM group_leases l USING gone g
   WHERE l.group_id = g.group_id AND l.topic_id = g.topic_id AND l.queue_id = g.queue_id;
  DELETE FROM group_ranges r USING gone g
   WHERE r.group_id = g.group_id AND r.topic_id = g.topic_id AND r.queue_id = g.queue_id;
  RETURN NULL;
END $$;

-- Every delivery not settled yet, one row per message, whichever way it is recorded: what a
-- person (and the broker's lag and metrics) asks for.
CREATE VIEW group_in_flight AS
SELECT group_id, topic_id, queue_id, msg_offset, attempt, state, lease_token, deadline,
       first_delivered_at, last_delivered_at
FROM group_leases
UNION ALL
SELECT r.group_id, r.topic_id, r.queue_id, o.o, 1, 'delivered', r.lease_token, r.deadline,
       r.delivered_at, r.delivered_at
FROM group_ranges r CROSS JOIN LATERAL generate_series(r.first_offset, r.end_offset - 1) AS o(o)
WHERE r.deadline < 'infinity' AND o.o <> ALL (r.settled);  -- infinity: all settled (0007)

-- group_lag counts group_in_flight from 0007 on (with the positions ranges give).
