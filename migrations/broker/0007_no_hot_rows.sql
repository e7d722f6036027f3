-- No row updated per produced or consumed batch (issue 15, W6). A row updated in place on every
-- batch leaves a dead version each time; while any snapshot is held (an analytics query, a
-- lagging replica slot, a forgotten psql) none can be pruned, and every read of the row walks
-- the whole chain: with a snapshot held for 4 minutes the broker fell from 4,307 to 694 msg/s.
--
-- queues.next_offset is no longer advanced by every produce. Producers of a queue serialize on
-- an advisory lock (no row version) held to commit, and the queue's end is the last stored
-- offset + 1: one backward probe of the messages index, in the segments from the one the
-- queue last entered (queues.segment). next_offset is now a floor, set when a queue enters a
-- new segment (once per segment) and by retention, so the end survives every message of a
-- queue being removed.
CREATE FUNCTION ferry_queue_end(t bigint, qid int) RETURNS bigint LANGUAGE sql STABLE AS $$
  SELECT greatest(q.next_offset,
                  COALESCE((SELECT m.msg_offset + 1 FROM messages m
                             WHERE m.topic_id = t AND m.queue_id = qid AND m.segment >= q.segment
                             ORDER BY m.msg_offset DESC LIMIT 1), 0))
  FROM queues q WHERE q.topic_id = t AND q.queue_id = qid
$$;

-- group_queues.delivered_offset is no longer advanced by every Consume: the group's newest
-- range on the queue says how far it has delivered. A range whose every message is settled is
-- kept while it is the newest (deadline infinity: never due; settled emptied) and removed by the
-- next Consume of the queue; a range removed for any other reason while it is the newest
-- (deadline passed) moves delivered_offset first. delivered_offset is a floor too (set by
-- reset, by ordered consumption, and by those removals).
CREATE FUNCTION ferry_group_delivered(g bigint, t bigint, qid int) RETURNS bigint LANGUAGE sql
STABLE AS $$
  SELECT greatest(gq.delivered_offset,
                  COALESCE((SELECT r.end_offset FROM group_ranges r
                             WHERE r.group_id = g AND r.topic_id = t AND r.queue_id = qid
                             ORDER BY r.first_offset DESC LIMIT 1), 0))
  FROM group_queues gq WHERE gq.group_id = g AND gq.topic_id = t AND gq.queue_id = qid
$$;

-- A settled newest range has deadline infinity and settled '{}' (all of it is settled: nothing
-- to remember per offset; group_in_flight leaves it out). Only ranges that can come due are in
-- the due index.
DROP INDEX group_ranges_due;
CREATE INDEX group_ranges_due ON group_ranges (group_id, topic_id, deadline)
  WHERE deadline < 'infinity';

DROP VIEW group_lag;
CREATE VIEW group_lag AS
SELECT g.name AS group_name,
       t.name AS topic,
       gq.queue_id,
       p.end_offset,
       c.committed_offset,
       p.delivered_offset,
       s.in_flight,
       s.retrying,
       p.end_offset - c.committed_offset AS lag,
       (SELECT now() - m.produced_at FROM messages m
         WHERE m.topic_id = gq.topic_id AND m.queue_id = gq.queue_id
           AND m.msg_offset = c.committed_offset) AS oldest_unacked_age,
       (SELECT count(*) FROM dead_letters d
         WHERE d.group_id = gq.group_id AND d.topic_id = gq.topic_id
           AND d.queue_id = gq.queue_id) AS dead_letters
FROM group_queues gq
JOIN consumer_groups g USING (group_id)
JOIN topics t USING (topic_id)
CROSS JOIN LATERAL (
  SELECT ferry_queue_end(gq.topic_id, gq.queue_id) AS end_offset,
         ferry_group_delivered(gq.group_id, gq.topic_id, gq.queue_id) AS delivered_offset
) p
CROSS JOIN LATERAL (
  SELECT COALESCE((SELECT min(l.msg_offset) FROM group_in_flight l
                    WHERE l.group_id = gq.group_id AND l.topic_id = gq.topic_id
                      AND l.queue_id = gq.queue_id), p.delivered_offset) AS committed_offset
) c
CROSS JOIN LATERAL (
  SELECT count(*) FILTER (WHERE l.state IN ('delivered', 'in_txn')) AS in_flight,
         count(*) FILTER (WHERE l.state IN ('retrying', 'redriven')) AS retrying
  FROM group_in_flight l
  WHERE l.group_id = gq.group_id AND l.topic_id = gq.topic_id AND l.queue_id = gq.queue_id
) s;
