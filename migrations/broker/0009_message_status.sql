-- Where each stored message is now, for each group with a position on its queue: what a person
-- asks of a message ("did billing get order 42?"), in plain columns. GetMessage (ferryctl
-- message get, the console) reads it for one message; filter it the same way by hand:
--   SELECT * FROM message_status WHERE topic = 'orders' AND queue_id = 2 AND msg_offset = 17;
-- state: pending (at or past the group's position: not delivered yet), in_flight (leased until
-- deadline), retrying (RETRY asked: due again at deadline), redriven (put back from the dead
-- letters: due at deadline), in_txn (ACKed inside a transaction not decided yet),
-- dead_lettered (dead_letter_reason says why), acked (behind the position and settled; a
-- position moved by a reset or a group that started at the end also leaves messages here).
CREATE VIEW message_status AS
SELECT t.name AS topic,
       m.queue_id,
       m.msg_offset,
       m.key,
       m.dedup_id,
       m.produced_at,
       g.name AS group_name,
       CASE WHEN f.state = 'delivered' THEN 'in_flight'
            WHEN f.state IS NOT NULL THEN f.state
            WHEN d.dead_letter_id IS NOT NULL THEN 'dead_lettered'
            WHEN m.msg_offset >= ferry_group_delivered(gq.group_id, gq.topic_id, gq.queue_id)
              THEN 'pending'
            ELSE 'acked' END AS state,
       f.attempt,
       f.deadline,
       d.reason AS dead_letter_reason,
       d.dead_letter_id,
       m.topic_id,
       g.group_id
FROM messages m
JOIN topics t ON t.topic_id = m.topic_id
JOIN group_queues gq ON gq.topic_id = m.topic_id AND gq.queue_id = m.queue_id
JOIN consumer_groups g ON g.group_id = gq.group_id
LEFT JOIN LATERAL (SELECT x.state, x.attempt, x.deadline FROM group_in_flight x
                    WHERE x.group_id = gq.group_id AND x.topic_id = m.topic_id
                      AND x.queue_id = m.queue_id AND x.msg_offset = m.msg_offset
                    LIMIT 1) f ON true
LEFT JOIN LATERAL (SELECT y.dead_letter_id, y.reason FROM dead_letters y
                    WHERE y.group_id = gq.group_id AND y.topic_id = m.topic_id
                      AND y.queue_id = m.queue_id AND y.msg_offset = m.msg_offset
                    ORDER BY y.dead_letter_id DESC LIMIT 1) d ON true;

COMMENT ON VIEW message_status IS
  'Each stored message and where it is for each group with a position on its queue (state: pending, in_flight, retrying, redriven, in_txn, dead_lettered, acked).';
COMMENT ON VIEW group_lag IS
  'One row per group and queue: end, committed and delivered offsets, in flight, retrying, dead letters, oldest unacked age.';
COMMENT ON VIEW group_in_flight IS
  'Every delivery not settled yet, one row per message (from group_leases and group_ranges).';
COMMENT ON TABLE topics IS 'Topics: name, queue count (fixed), retention and dedup window.';
COMMENT ON COLUMN topics.retention_ms IS 'Messages older than this are removed (whole segments).';
COMMENT ON COLUMN topics.dedup_window_ms IS 'A dedup id seen within this window marks a duplicate.';
COMMENT ON TABLE queues IS 'One row per queue of a topic; the end is derived (ferry_queue_end).';
COMMENT ON TABLE messages IS 'Every stored message, append-only, partitioned by time segment.';
COMMENT ON COLUMN messages.msg_offset IS 'Dense per queue: 0, 1, 2, ...';
COMMENT ON COLUMN messages.segment IS 'The time segment (partition) the message is stored in.';
COMMENT ON COLUMN messages.dedup_id IS 'The producer''s dedup id, if it gave one.';
COMMENT ON TABLE consumer_groups IS 'Consumer groups and their delivery policy.';
COMMENT ON TABLE group_queues IS 'A group''s position on a queue (delivered_offset is a floor; see ferry_group_delivered).';
COMMENT ON TABLE group_leases IS 'Per-message deliveries not settled: leased, retrying, redriven, in a transaction.';
COMMENT ON TABLE group_ranges IS 'A batch delivered to a group (one row per Consume and queue); settled lists the offsets done.';
COMMENT ON TABLE dead_letters IS 'Messages a group gave up on, with a copy of the message and the reason.';
COMMENT ON TABLE delayed_messages IS 'Messages produced with a delay, moved into their queue when due.';
COMMENT ON TABLE dedup IS 'Dedup ids seen per topic within its window, and where each message went.';
COMMENT ON TABLE transactions IS 'Transactions (half messages until decided), with their check state.';
COMMENT ON TABLE transaction_events IS 'The audit trail of each transaction: checks, answers, decisions, by whom.';
