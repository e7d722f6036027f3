-- The insert trigger no longer sends NOTIFY. A transaction that has notified takes one lock
-- per database at commit and holds it through its WAL flush, so every application
-- transaction writing to the outbox committed one at a time (W4: 4 writers of 10-row
-- transactions managed 4,400 rows/s; without NOTIFY, their commits share flushes again).
-- The relay polls instead: right away after a batch, every --poll-interval-ms (10 ms by
-- default) when it finds nothing; a poll is one probe of a partial index holding open rows.
CREATE OR REPLACE FUNCTION ferry_outbox_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.key IS NOT NULL THEN
    INSERT INTO ferry_outbox_key_seq (key, last_seq) VALUES (NEW.key, 1)
      ON CONFLICT (key) DO UPDATE SET last_seq = ferry_outbox_key_seq.last_seq + 1
      RETURNING last_seq INTO NEW.key_seq;
  END IF;
  RETURN NEW;
END
$$;
