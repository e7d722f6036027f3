-- Transactions: half messages, ACKs attached to a transaction, back-checks, audit trail.
-- States only move forward: PREPARED -> COMMITTED | ROLLED_BACK | CHECK_EXHAUSTED, and from
-- CHECK_EXHAUSTED only by an administrator (to COMMITTED or ROLLED_BACK, or re-armed to
-- PREPARED for more checks).
CREATE TABLE transactions (
  txn_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  producer_group text NOT NULL CHECK (producer_group ~ '^[A-Za-z0-9._-]{1,128}$'),
  check_ref      text,
  state          text NOT NULL DEFAULT 'PREPARED'
                 CHECK (state IN ('PREPARED', 'COMMITTED', 'ROLLED_BACK', 'CHECK_EXHAUSTED')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  ended_at       timestamptz,
  checks_sent    int NOT NULL DEFAULT 0,  -- only checks actually sent to a checker
  next_check_at  timestamptz NOT NULL,    -- the database's clock: one clock for every broker
  last_check_at  timestamptz
);
CREATE INDEX transactions_due ON transactions (producer_group, next_check_at)
  WHERE state = 'PREPARED';
CREATE INDEX transactions_state ON transactions (state, created_at);

-- Messages produced inside a transaction: durable, invisible, no queue or offset yet.
CREATE TABLE half_messages (
  txn_id        uuid NOT NULL REFERENCES transactions ON DELETE CASCADE,
  seq           int NOT NULL,  -- send order within the transaction
  topic_id      bigint NOT NULL REFERENCES topics ON DELETE CASCADE,
  key           text,
  payload       bytea NOT NULL,
  headers       jsonb NOT NULL DEFAULT '{}',
  dedup_id      text,
  deliver_at_ms bigint NOT NULL DEFAULT 0,  -- a delayed message once committed
  PRIMARY KEY (txn_id, seq)
);

-- Consumer ACKs waiting for their transaction (their leases are held, state 'in_txn').
CREATE TABLE txn_acks (
  txn_id      uuid NOT NULL REFERENCES transactions ON DELETE CASCADE,
  group_id    bigint NOT NULL,
  topic_id    bigint NOT NULL,
  queue_id    int NOT NULL,
  msg_offset  bigint NOT NULL,
  lease_token bigint NOT NULL,
  PRIMARY KEY (txn_id, group_id, topic_id, queue_id, msg_offset)
);

-- Every transition and every back-check: who, when, what (readable with SQL).
CREATE TABLE transaction_events (
  event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  txn_id   uuid NOT NULL REFERENCES transactions ON DELETE CASCADE,
  at       timestamptz NOT NULL DEFAULT now(),
  kind     text NOT NULL,  -- begin, check, answer, commit, rollback, exhausted, resolve, rearm
  actor    text NOT NULL,
  detail   text NOT NULL DEFAULT ''
);
CREATE INDEX transaction_events_txn ON transaction_events (txn_id, event_id);

-- Checkers connected to some broker (refreshed every few seconds while connected).
CREATE TABLE txn_checkers (
  producer_group text NOT NULL,
  broker_id      text NOT NULL,
  checkers       int NOT NULL,
  seen_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (producer_group, broker_id)
);
