-- Each open outbox row and why it is where it is, in words (issue 16): a row held back behind a
-- failed row of its key showed `pending` with 0 attempts and no error, and looked stuck for no
-- reason. Rows of one key are published in commit order, so a failed row holds back every later
-- row of its key until a person calls ferry_outbox_requeue or ferry_outbox_skip on it.
--   SELECT id, key, explanation FROM ferry_outbox_status WHERE held_back_by IS NOT NULL;
CREATE VIEW ferry_outbox_status AS
SELECT o.id, o.topic, o.key, o.key_seq, o.status, o.attempts, o.next_attempt_at, o.last_error,
       o.created_at, o.claimed_by, o.claimed_until,
       f.id AS held_back_by,
       CASE WHEN o.status = 'failed'
              THEN 'failed: ' || COALESCE(o.last_error, '(no error recorded)') ||
                   '; ferry_outbox_requeue(id) or ferry_outbox_skip(id, reason)'
            WHEN f.id IS NOT NULL
              THEN 'held back: row ' || f.id || ' of key ' || o.key ||
                   ' failed before it (rows of a key go in commit order)'
            WHEN o.claimed_until > now()
              THEN 'being published by ' || COALESCE(o.claimed_by, '?')
            WHEN o.attempts > 0
              THEN 'retrying after ' || o.attempts || ' attempts: ' || COALESCE(o.last_error, '')
            ELSE 'waiting to be published' END AS explanation
FROM ferry_outbox o
LEFT JOIN LATERAL (SELECT x.id FROM ferry_outbox x
                    WHERE x.key = o.key AND x.status = 'failed' AND x.key_seq < o.key_seq
                    ORDER BY x.key_seq LIMIT 1) f ON o.key IS NOT NULL AND o.status = 'pending'
WHERE o.status IN ('pending', 'failed');

COMMENT ON VIEW ferry_outbox_status IS
  'Open outbox rows (pending, failed) with held_back_by (the failed row of the same key they wait behind) and an explanation.';
COMMENT ON TABLE ferry_outbox IS
  'The transactional outbox: rows inserted with business data, published by ferry-relay.';
COMMENT ON COLUMN ferry_outbox.status IS
  'pending (to publish or retrying), sent, failed (a person decides), skipped.';
COMMENT ON COLUMN ferry_outbox.key_seq IS 'Commit order of the rows of one key.';
COMMENT ON TABLE ferry_inbox IS
  'Message ids a consumer group has processed: a duplicate delivery finds its id and skips.';
