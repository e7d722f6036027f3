-- A Consume of new messages in one round trip (issue 15). The broker's general path is about
-- eight statements, each a round trip between two processes that share the machine; profiles
-- of W2 showed the per-statement cost (send, poll, wake-up, parse, bind) had become most of
-- the work once leases were one row per batch. This function is that path for the common
-- case, in one statement: a group that already reads the topic, neither ordered, no lease of
-- the group due. It answers one header row first (queue_id -1: topic_id, group_id, and in
-- msg_offset 1 when the caller must take the general path instead: the group or its position
-- does not exist yet, ordered consumption, or leases are due), then the messages delivered.
-- Called in its own transaction (autocommit); the range it records commits without the WAL
-- flush, as every lease does.
CREATE FUNCTION ferry_consume(p_topic text, p_group text, p_max int, p_max_bytes bigint,
                              p_visibility_ms bigint, p_check_due boolean)
RETURNS TABLE (queue_id int, msg_offset bigint, key text, payload bytea, headers text,
               produced_us bigint, lease_token bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  v_topic topics%ROWTYPE;
  v_group consumer_groups%ROWTYPE;
  v_start int;
  v_held int[] := '{}';
  v_locked int[];
  v_q int[] := '{}';          -- readable queues held, with
  v_from bigint[] := '{}';    -- the next offset to deliver,
  v_end bigint[] := '{}';     -- the queue's end,
  v_marker bigint[] := '{}';  -- the settled newest range that marks the position (or NULL)
  v_take bigint[];
  v_backlog bigint := 0;
  v_left int;
  v_progress boolean;
  v_n int;
  v_idx int;
  v_round int;
  v_rows record;
  v_bytes bigint := 0;
  v_cut boolean := false;
  v_taken int := 0;
  v_mq int[] := '{}';
  v_mo bigint[] := '{}';
  v_mk text[] := '{}';
  v_mp bytea[] := '{}';
  v_mh text[] := '{}';
  v_mt bigint[] := '{}';
  v_rq int[] := '{}';
  v_rf bigint[] := '{}';
  v_re bigint[] := '{}';
  v_rh text[] := '{}';
  v_tokens bigint[];
  v_tq int[];
BEGIN
  PERFORM set_config('synchronous_commit', 'off', true);
  SELECT * INTO v_topic FROM topics WHERE name = p_topic;
  IF NOT FOUND THEN
    RETURN;  -- no rows at all: the topic does not exist
  END IF;
  SELECT * INTO v_group FROM consumer_groups WHERE name = p_group;
  IF NOT FOUND OR v_group.ordered OR v_topic.ordered
     OR NOT EXISTS (SELECT 1 FROM group_queues gq
                     WHERE gq.group_id = v_group.group_id AND gq.topic_id = v_topic.topic_id) THEN
    RETURN QUERY SELECT -1, 1::bigint, NULL::text, NULL::bytea, NULL::text,
                        v_topic.topic_id, v_group.group_id;
    RETURN;
  END IF;
  IF p_check_due THEN
    -- Due ranges become due leases (as DissolveRanges does); then the general path takes them.
    WITH gone AS (
      DELETE FROM group_ranges g WHERE g.ctid = ANY(ARRAY(
        SELECT r.ctid FROM group_ranges r WHERE r.group_id = v_group.group_id
           AND r.topic_id = v_topic.topic_id AND r.deadline <= now()
         ORDER BY r.deadline LIMIT p_max FOR UPDATE SKIP LOCKED))
      RETURNING g.*),
    fold AS (
      UPDATE group_queues gq SET delivered_offset = greatest(gq.delivered_offset, x.e)
        FROM (SELECT gone.group_id, gone.topic_id, gone.queue_id, max(gone.end_offset) AS e
                FROM gone GROUP BY 1, 2, 3) x
       WHERE gq.group_id = x.group_id AND gq.topic_id = x.topic_id AND gq.queue_id = x.queue_id)
    INSERT INTO group_leases (group_id, topic_id, queue_id, msg_offset, attempt, lease_token,
                              deadline, first_delivered_at, last_delivered_at)
    SELECT gone.group_id, gone.topic_id, gone.queue_id, o.o, 1, gone.lease_token, gone.deadline,
           gone.delivered_at, gone.delivered_at
      FROM gone CROSS JOIN LATERAL generate_series(gone.first_offset, gone.end_offset - 1) AS o(o)
     WHERE gone.deadline < 'infinity' AND o.o <> ALL (gone.settled);
  END IF;
  IF EXISTS (SELECT 1 FROM group_leases l WHERE l.group_id = v_group.group_id
                AND l.topic_id = v_topic.topic_id AND l.deadline <= now()
                AND l.deadline < 'infinity') THEN
    RETURN QUERY SELECT -1, 1::bigint, NULL::text, NULL::bytea, NULL::text,
                        v_topic.topic_id, v_group.group_id;
    RETURN;
  END IF;

  -- Queues: one first (from a random start), more only if its backlog does not fill the batch;
  -- when every readable queue is held by another consumer, wait for one. Each lock, then the
  -- positions in a statement of its own (a fresh snapshot: what the previous holder recorded).
  v_start := floor(random() * v_topic.queue_count)::int;
  v_round := 0;
  LOOP
    -- round 0: one free queue; 1: more free queues if its backlog does not fill the batch;
    -- 2: nothing readable was free: wait for a queue another consumer holds.
    IF v_round = 1 AND v_backlog >= p_max THEN
      EXIT;
    END IF;
    IF v_round = 2 AND cardinality(v_q) > 0 THEN
      EXIT;
    END IF;
    EXIT WHEN v_round > 2;
    IF v_round < 2 THEN
      SELECT array_agg(s.queue_id) INTO v_locked FROM (
        SELECT gq.queue_id FROM group_queues gq JOIN queues q
            ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id
         WHERE gq.group_id = v_group.group_id AND gq.topic_id = v_topic.topic_id
           AND gq.queue_id <> ALL (v_held)
           AND greatest(ferry_group_delivered(gq.group_id, gq.topic_id, gq.queue_id),
                        q.first_offset) < ferry_queue_end(q.topic_id, q.queue_id)
         ORDER BY gq.queue_id < v_start, gq.queue_id
         LIMIT CASE WHEN v_round = 0 THEN 1 ELSE v_topic.queue_count END
         FOR UPDATE OF gq SKIP LOCKED) s;
    ELSE
      SELECT array_agg(s.queue_id) INTO v_locked FROM (
        SELECT gq.queue_id FROM group_queues gq JOIN queues q
            ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id
         WHERE gq.group_id = v_group.group_id AND gq.topic_id = v_topic.topic_id
           AND greatest(ferry_group_delivered(gq.group_id, gq.topic_id, gq.queue_id),
                        q.first_offset) < ferry_queue_end(q.topic_id, q.queue_id)
         ORDER BY gq.queue_id < v_start, gq.queue_id LIMIT 1 FOR UPDATE OF gq) s;
    END IF;
    IF v_locked IS NULL THEN
      -- nothing free (round 0) or no more (round 1): wait only if nothing is held
      v_round := 2 + (v_round / 2);
      CONTINUE;
    END IF;
    v_held := v_held || v_locked;
    FOR v_rows IN
      SELECT gq.queue_id AS q,
             greatest(gq.delivered_offset, COALESCE(r.end_offset, 0), q.first_offset) AS f,
             ferry_queue_end(q.topic_id, q.queue_id) AS e,
             CASE WHEN r.deadline = 'infinity' THEN r.first_offset END AS m
        FROM group_queues gq JOIN queues q ON q.topic_id = gq.topic_id AND q.queue_id = gq.queue_id
        LEFT JOIN LATERAL (SELECT r.end_offset, r.first_offset, r.deadline FROM group_ranges r
                            WHERE r.group_id = gq.group_id AND r.topic_id = gq.topic_id
                              AND r.queue_id = gq.queue_id
                            ORDER BY r.first_offset DESC LIMIT 1) r ON true
       WHERE gq.group_id = v_group.group_id AND gq.topic_id = v_topic.topic_id
         AND gq.queue_id = ANY (v_locked)
       ORDER BY gq.queue_id
    LOOP
      CONTINUE WHEN v_rows.f >= v_rows.e;  -- drained by whoever held it before
      v_q := v_q || v_rows.q;
      v_from := v_from || v_rows.f;
      v_end := v_end || v_rows.e;
      v_marker := v_marker || v_rows.m;
      v_backlog := v_backlog + (v_rows.e - v_rows.f);
    END LOOP;
    v_round := v_round + 1;
  END LOOP;

  v_n := cardinality(v_q);
  IF v_n > 0 THEN
    -- Shared round robin from a random first queue.
    v_take := array_fill(0::bigint, ARRAY[v_n]);
    v_left := p_max;
    v_start := floor(random() * v_n)::int;
    v_progress := true;
    WHILE v_left > 0 AND v_progress LOOP
      v_progress := false;
      FOR k IN 0..v_n - 1 LOOP
        EXIT WHEN v_left = 0;
        v_idx := (v_start + k) % v_n + 1;
        IF v_from[v_idx] + v_take[v_idx] < v_end[v_idx] THEN
          v_take[v_idx] := v_take[v_idx] + 1;
          v_left := v_left - 1;
          v_progress := true;
        END IF;
      END LOOP;
    END LOOP;
    -- Read in queue order; over the byte budget, this queue stops there and later ones give
    -- nothing (as the general path). Each queue's delivered offsets become its range.
    FOR v_rows IN
      SELECT m.queue_id AS q, m.msg_offset AS o, m.key AS k, m.payload AS p,
             m.headers::text AS h, (extract(epoch FROM m.produced_at) * 1000000)::bigint AS t
        FROM unnest(v_q, v_from, v_take) AS x(q, f, n) CROSS JOIN LATERAL
             (SELECT * FROM messages m WHERE m.topic_id = v_topic.topic_id AND m.queue_id = x.q
                 AND m.msg_offset >= x.f AND m.msg_offset < x.f + x.n
                 AND m.segment >= COALESCE((SELECT max(s.segment) FROM queue_segments s
                                             WHERE s.topic_id = v_topic.topic_id
                                               AND s.queue_id = x.q AND s.first_offset <= x.f), 0)
               ORDER BY m.msg_offset LIMIT x.n) m
       WHERE x.n > 0
       ORDER BY m.queue_id, m.msg_offset
    LOOP
      EXIT WHEN v_cut;
      IF v_taken > 0 AND p_max_bytes > 0 AND v_bytes + length(v_rows.p) > p_max_bytes THEN
        v_cut := true;
        EXIT;
      END IF;
      v_taken := v_taken + 1;
      v_bytes := v_bytes + length(v_rows.p);
      v_mq := v_mq || v_rows.q;
      v_mo := v_mo || v_rows.o;
      v_mk := v_mk || v_rows.k;
      v_mp := v_mp || v_rows.p;
      v_mh := v_mh || v_rows.h;
      v_mt := v_mt || v_rows.t;
      IF cardinality(v_rq) = 0 OR v_rq[cardinality(v_rq)] <> v_rows.q THEN
        v_rq := v_rq || v_rows.q;
        v_rf := v_rf || v_rows.o;
        v_re := v_re || (v_rows.o + 1);
        v_rh := v_rh || ''::text;
      ELSE
        -- offsets skipped inside a range (removed by retention meanwhile) are settled
        FOR h IN v_re[cardinality(v_re)]..v_rows.o - 1 LOOP
          v_rh[cardinality(v_rh)] := v_rh[cardinality(v_rh)] ||
                                     CASE WHEN v_rh[cardinality(v_rh)] = '' THEN '' ELSE ',' END ||
                                     h::text;
        END LOOP;
        v_re[cardinality(v_re)] := v_rows.o + 1;
      END IF;
    END LOOP;
  END IF;

  IF cardinality(v_rq) > 0 THEN
    WITH ins AS (
      INSERT INTO group_ranges (group_id, topic_id, queue_id, first_offset, end_offset,
                                lease_token, deadline, delivered_at, settled)
      SELECT v_group.group_id, v_topic.topic_id, x.q, x.f, x.e, nextval('lease_token_seq'),
             now() + p_visibility_ms * interval '1 millisecond', now(),
             string_to_array(x.h, ',')::bigint[]
        FROM unnest(v_rq, v_rf, v_re, v_rh) AS x(q, f, e, h)
      RETURNING group_ranges.queue_id AS q, group_ranges.lease_token AS t)
    SELECT array_agg(ins.q), array_agg(ins.t) INTO v_tq, v_tokens FROM ins;
    -- The settled ranges that marked the positions go now that newer ones do.
    DELETE FROM group_ranges r USING unnest(v_q, v_marker) AS x(q, m)
     WHERE r.group_id = v_group.group_id AND r.topic_id = v_topic.topic_id AND r.queue_id = x.q
       AND r.first_offset = x.m AND x.q = ANY (v_rq);
  END IF;

  RETURN QUERY SELECT -1, 0::bigint, NULL::text, NULL::bytea, NULL::text,
                      v_topic.topic_id, v_group.group_id;
  RETURN QUERY
    SELECT m.q, m.o, m.k, m.p, m.h, m.t, tk.t
      FROM unnest(v_mq, v_mo, v_mk, v_mp, v_mh, v_mt) WITH ORDINALITY AS m(q, o, k, p, h, t, n)
      JOIN unnest(v_tq, v_tokens) AS tk(q, t) ON tk.q = m.q
     ORDER BY m.n;
END
$$;
