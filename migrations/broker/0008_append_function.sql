-- Produce in one round trip (issue 15, W1 and W3). A Produce of messages due now was six
-- statements, each a round trip between the broker and PostgreSQL (BEGIN, the topic, the queue
-- locks, the queue ends, the insert, COMMIT), four of them while holding the queues' locks; on
-- a busy machine each round trip costs a scheduler wake-up on both sides. This function does
-- the same work (PgStore's AppendToTopic and AppendRows: the same locks, in the same order, so
-- the two paths serialize with each other) and the broker calls it outside a transaction block:
-- one statement, committed when it returns.
--
-- t and qcount are the broker's cached view of the topic (queue_count never changes); qs is
-- the queue the broker chose for each message (by key), ks/ps/hs/ds its key, payload, headers
-- and dedup id (ds NULL: no message has one). Returns one row per message, in order:
-- where it is (queue and offset, or the delayed message an earlier duplicate is waiting as)
-- and whether it is a duplicate. Returns no rows, and writes nothing, when topic t is gone or
-- has another queue count: the broker then looks the topic up again and takes the long path.
CREATE FUNCTION ferry_append(t bigint, qcount int, qs int[], ks text[], ps bytea[], hs jsonb[],
                             ds text[])
RETURNS TABLE (r_queue int, r_offset bigint, r_delayed bigint, r_duplicate boolean)
LANGUAGE plpgsql AS $$
DECLARE
  window_ms bigint;
  now_seg int;      -- the current time segment (ferry_current_segment(), inline)
  keep boolean[];   -- per message: stored now (not a duplicate); NULL: every message
  own int[];        -- per message: the first message of the call with its dedup id
  pq int[];         -- per message: where an earlier message with its dedup id went
  po bigint[];
  pdl bigint[];
  dq int[];         -- the queues written, ascending (the lock order)
  lo int;           -- the lowest segment they entered
  seg int;
  eq int[];         -- per written queue: its id and end
  ee bigint[];
  seg_min int;
  seg_max int;
  offs bigint[];    -- per message: its offset (NULL: not stored)
BEGIN
  SELECT tp.dedup_window_ms,
         floor(extract(epoch FROM now()) /
               (SELECT value FROM broker_settings WHERE key = 'segment_seconds'))::int
    INTO window_ms, now_seg
    FROM topics tp WHERE tp.topic_id = t AND tp.queue_count = qcount;
  IF NOT FOUND THEN
    RETURN;
  END IF;

  -- Dedup: producers of the same ids take turns until commit (in hash order: no cycles), then
  -- one primary-key probe per id (LATERAL + LIMIT) finds a claim made within the window.
  IF ds IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(h)
       FROM (SELECT DISTINCT hashtextextended(t::text || '/' || d, 0) AS h
               FROM unnest(ds) AS d WHERE d IS NOT NULL ORDER BY h) s;
    SELECT array_agg(x.keep ORDER BY x.i), array_agg(x.own ORDER BY x.i),
           array_agg(x.pq ORDER BY x.i), array_agg(x.po ORDER BY x.i),
           array_agg(x.pdl ORDER BY x.i)
      INTO keep, own, pq, po, pdl
      FROM (SELECT m.i, min(m.i) OVER (PARTITION BY m.d) AS own, p.queue_id AS pq,
                   p.msg_offset AS po, p.delayed_id AS pdl,
                   m.d IS NULL OR (p.dedup_id IS NULL AND m.i = min(m.i) OVER (PARTITION BY m.d))
                     AS keep
              FROM unnest(ds) WITH ORDINALITY AS m(d, i)
              LEFT JOIN LATERAL (SELECT x.dedup_id, x.queue_id, x.msg_offset, x.delayed_id
                                   FROM dedup x
                                  WHERE x.topic_id = t AND x.dedup_id = m.d
                                    AND x.expires_at > now() LIMIT 1) p ON m.d IS NOT NULL) x;
  END IF;

  SELECT w.dq, (SELECT min(q.segment) FROM queues q WHERE q.topic_id = t AND q.queue_id = ANY(w.dq))
    INTO dq, lo
    FROM (SELECT array_agg(DISTINCT m.q ORDER BY m.q) AS dq
            FROM unnest(qs, keep) AS m(q, k) WHERE m.k IS NOT FALSE) w;
  IF dq IS NOT NULL THEN
    -- Producers of a queue take turns until commit (in queue order: no cycles), so offsets are
    -- dense and commit in order. lo (read before the locks: a queue's segment only grows)
    -- bounds the read of their ends to the partitions that can hold them.
    PERFORM pg_advisory_xact_lock(t::int, q) FROM unnest(dq) AS q;
    -- A statement of its own, after the locks: it sees the previous holder's commit.
    SELECT array_agg(s.queue_id ORDER BY s.queue_id), array_agg(s.e ORDER BY s.queue_id),
           min(s.segment), max(s.segment)
      INTO eq, ee, seg_min, seg_max
      FROM (SELECT q.queue_id, q.segment,
                   greatest(q.next_offset,
                            COALESCE((SELECT m.msg_offset + 1 FROM messages m
                                       WHERE m.topic_id = q.topic_id AND m.queue_id = q.queue_id
                                         AND m.segment >= q.segment AND m.segment >= lo
                                       ORDER BY m.msg_offset DESC LIMIT 1), 0)) AS e
              FROM queues q WHERE q.topic_id = t AND q.queue_id = ANY(dq)
               FOR KEY SHARE) s;
    IF cardinality(eq) IS DISTINCT FROM cardinality(dq) THEN
      RETURN;  -- the topic was deleted meanwhile
    END IF;
    -- One segment for the whole insert: now's, or a later one a queue already entered.
    seg := greatest(now_seg, seg_max);
    IF seg_min <> seg THEN
      -- A queue's first write into this segment (once an hour): its partition exists (made
      -- ahead by maintenance; else made now), and where the segment starts for it is recorded.
      PERFORM ferry_ensure_segments(0);
      UPDATE queues SET next_offset = greatest(next_offset, x.e), segment = seg
        FROM unnest(eq, ee) AS x(q, e)
       WHERE queues.topic_id = t AND queues.queue_id = x.q AND queues.segment <> seg;
      INSERT INTO queue_segments (topic_id, queue_id, segment, first_offset)
      SELECT t, x.q, seg, x.e FROM unnest(eq, ee) AS x(q, e) ON CONFLICT DO NOTHING;
    END IF;
    SELECT array_agg(x.o ORDER BY x.i) INTO offs
      FROM (SELECT m.i, CASE WHEN m.k IS NOT FALSE THEN
                          e.e + row_number() OVER (PARTITION BY m.q, m.k IS NOT FALSE
                                                   ORDER BY m.i) - 1 END AS o
              FROM unnest(qs, keep) WITH ORDINALITY AS m(q, k, i)
              LEFT JOIN unnest(eq, ee) AS e(q, e) ON e.q = m.q) x;
    INSERT INTO messages (topic_id, queue_id, msg_offset, segment, key, payload, headers,
                          dedup_id)
    SELECT t, m.q, m.o, seg, m.k, m.p, m.h, m.d
      FROM unnest(qs, offs, ks, ps, hs, ds) AS m(q, o, k, p, h, d) WHERE m.o IS NOT NULL;
    IF ds IS NOT NULL THEN
      INSERT INTO dedup (topic_id, dedup_id, queue_id, msg_offset, delayed_id, expires_at)
      SELECT t, m.d, m.q, m.o, NULL, now() + window_ms * interval '1 millisecond'
        FROM unnest(qs, offs, ds) AS m(q, o, d) WHERE m.o IS NOT NULL AND m.d IS NOT NULL
          ON CONFLICT (topic_id, dedup_id) DO UPDATE SET queue_id = EXCLUDED.queue_id,
             msg_offset = EXCLUDED.msg_offset, delayed_id = NULL, expires_at = EXCLUDED.expires_at;
    END IF;
  END IF;

  RETURN QUERY
  SELECT CASE WHEN offs[m.i] IS NOT NULL THEN m.q
              WHEN pq[m.i] IS NOT NULL OR pdl[m.i] IS NOT NULL THEN pq[m.i]
              ELSE qs[own[m.i]] END,
         CASE WHEN offs[m.i] IS NOT NULL THEN offs[m.i]
              WHEN pq[m.i] IS NOT NULL OR pdl[m.i] IS NOT NULL THEN po[m.i]
              ELSE offs[own[m.i]] END,
         CASE WHEN offs[m.i] IS NULL THEN pdl[m.i] END,
         offs[m.i] IS NULL
    FROM unnest(qs) WITH ORDINALITY AS m(q, i) ORDER BY m.i;
END
$$;
