-- What the console shows beyond the current state: which brokers are running, and the history of
-- every group's lag and every topic's end (charts over days, not only "now").

-- Each running broker refreshes its row every few seconds; a row not seen for a minute is a
-- broker that stopped (rows older than a day are removed by the brokers still running).
CREATE TABLE brokers (
  broker_id  text PRIMARY KEY,          -- host/pid, as in the transactions' audit trail
  version    text NOT NULL,
  listen     text NOT NULL,             -- the gRPC address it was told to listen on
  started_at timestamptz NOT NULL,
  seen_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE brokers IS 'Brokers connected to this database; seen_at is refreshed every few seconds while one runs.';

-- One row per (group, topic) and one per topic (group_name = '') every sampling interval (one
-- broker samples, whichever takes the lock first); past a day, one per ten minutes is kept. Totals over the topic's queues: rates are the
-- difference of two samples' end_offset (produced) or position (consumed) over their distance.
CREATE TABLE stats_samples (
  sampled_at        timestamptz NOT NULL,
  group_name        text NOT NULL,      -- '' for a topic's own row
  topic             text NOT NULL,
  end_offset        bigint NOT NULL,    -- sum over queues: messages ever stored
  position          bigint NOT NULL,    -- sum of the group's committed positions (0 on topic rows)
  backlog           bigint NOT NULL,    -- not yet delivered to the group
  unsettled         bigint NOT NULL,    -- delivered and not yet settled (in flight + retrying)
  in_flight         bigint NOT NULL,
  retrying          bigint NOT NULL,
  dead_letters      bigint NOT NULL,
  oldest_unacked_ms bigint NOT NULL,    -- age of the oldest unsettled delivery, 0 when none
  delayed           bigint NOT NULL,    -- topic rows: delayed messages waiting
  PRIMARY KEY (group_name, topic, sampled_at)
);
CREATE INDEX stats_samples_time ON stats_samples (sampled_at);
COMMENT ON COLUMN brokers.seen_at IS 'refreshed every 5 s while the broker runs: older than 30 s means it is gone';
COMMENT ON COLUMN stats_samples.group_name IS 'the consumer group; empty for the topic''s own row';
COMMENT ON COLUMN stats_samples.end_offset IS 'messages ever stored in the topic (sum over queues); produce rate = difference / time';
COMMENT ON COLUMN stats_samples.position IS 'the group''s committed positions summed; consume rate = difference / time';
COMMENT ON COLUMN stats_samples.backlog IS 'stored and never delivered to the group';
COMMENT ON COLUMN stats_samples.unsettled IS 'delivered and not settled: in flight + retrying';
COMMENT ON COLUMN stats_samples.oldest_unacked_ms IS 'age of the oldest unsettled delivery (0: none)';
COMMENT ON COLUMN stats_samples.delayed IS 'topic rows: delayed messages waiting to be due';
COMMENT ON TABLE stats_samples IS 'Lag and end offsets over time (the console''s charts); kept for --stats-retention-hours.';

-- Records one sample unless another broker recorded one within the last 0.9 interval; removes
-- samples older than keep_ms. Returns the rows written (0: not this broker's turn).
CREATE FUNCTION ferry_record_stats(interval_ms bigint, keep_ms bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  written bigint;
BEGIN
  IF NOT pg_try_advisory_xact_lock(hashtext('ferry_record_stats')) THEN
    RETURN 0;
  END IF;
  IF EXISTS (SELECT 1 FROM stats_samples
             WHERE sampled_at > now() - make_interval(secs => interval_ms * 0.9 / 1000.0)) THEN
    RETURN 0;
  END IF;
  WITH ends AS (
    SELECT q.topic_id, q.queue_id, q.first_offset, ferry_queue_end(q.topic_id, q.queue_id) AS end_offset
    FROM queues q
  ), per_group AS (
    SELECT g.name AS group_name, t.name AS topic,
           sum(e.end_offset) AS end_offset,
           sum(greatest(COALESCE(l.first, p.delivered), e.first_offset)) AS position,
           sum(greatest(e.end_offset - greatest(p.delivered, e.first_offset), 0)) AS backlog,
           COALESCE(sum(l.unsettled), 0) AS unsettled,
           COALESCE(sum(l.in_flight), 0) AS in_flight,
           COALESCE(sum(l.retrying), 0) AS retrying,
           COALESCE((extract(epoch FROM now() - min(l.oldest)) * 1000)::bigint, 0) AS oldest_ms,
           g.group_id, t.topic_id
    FROM group_queues gq JOIN consumer_groups g USING (group_id) JOIN topics t USING (topic_id)
    JOIN ends e ON e.topic_id = gq.topic_id AND e.queue_id = gq.queue_id
    CROSS JOIN LATERAL (SELECT ferry_group_delivered(gq.group_id, gq.topic_id, gq.queue_id) AS delivered) p
    LEFT JOIN LATERAL (SELECT min(msg_offset) AS first, count(*) AS unsettled,
        count(*) FILTER (WHERE state IN ('delivered', 'in_txn')) AS in_flight,
        count(*) FILTER (WHERE state IN ('retrying', 'redriven')) AS retrying,
        min(first_delivered_at) AS oldest
      FROM group_in_flight f WHERE f.group_id = gq.group_id AND f.topic_id = gq.topic_id
        AND f.queue_id = gq.queue_id) l ON true
    GROUP BY g.name, t.name, g.group_id, t.topic_id
  ), rows AS (
    SELECT now() AS sampled_at, pg.group_name, pg.topic, pg.end_offset, pg.position, pg.backlog,
           pg.unsettled, pg.in_flight, pg.retrying,
           (SELECT count(*) FROM dead_letters d WHERE d.group_id = pg.group_id
              AND d.topic_id = pg.topic_id) AS dead_letters,
           pg.oldest_ms, 0::bigint AS delayed
    FROM per_group pg
    UNION ALL
    SELECT now(), '', t.name, COALESCE((SELECT sum(e.end_offset) FROM ends e
                                         WHERE e.topic_id = t.topic_id), 0),
           0, 0, 0, 0, 0, 0, 0,
           (SELECT count(*) FROM delayed_messages d WHERE d.topic_id = t.topic_id)
    FROM topics t
  )
  INSERT INTO stats_samples SELECT * FROM rows;
  GET DIAGNOSTICS written = ROW_COUNT;
  -- Past a day, one sample in ten minutes is enough for a chart over days: the samples that
  -- have just aged past a day keep only those taken in a minute divisible by 10 (with the
  -- default 60 s interval: a week is 1,440 + 864 rows per series instead of 10,080).
  IF interval_ms < 600000 THEN
    DELETE FROM stats_samples
    WHERE sampled_at < now() - interval '1 day'
      AND sampled_at >= now() - interval '1 day' - make_interval(secs => 3 * interval_ms / 1000.0)
      AND extract(minute FROM sampled_at)::int % 10 <> 0;
  END IF;
  DELETE FROM stats_samples WHERE sampled_at < now() - make_interval(secs => keep_ms / 1000.0);
  DELETE FROM brokers WHERE seen_at < now() - interval '1 day';
  RETURN written;
END $$;
