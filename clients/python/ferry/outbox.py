"""The transactional outbox and the inbox, on the application's PostgreSQL database.

Same tables and semantics as the C++ helpers (created by `ferry-relay migrate`): enqueue()
inserts a ferry_outbox row in the caller's transaction, ferry-relay publishes it after commit
(never if it rolls back), with the row id as dedup id and as the "ferry-outbox-id" header.
process_once() records (consumer_group, message id) in ferry_inbox in the caller's
transaction and runs the effects only the first time.

`conn` is a psycopg 3 or psycopg2 connection (or cursor), or a SQLAlchemy Connection/Session;
the caller owns the transaction (begin, commit, rollback).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Mapping, Optional, Sequence, Union


def _execute(conn: Any, sql: str, params: Sequence[Any]) -> Optional[tuple]:
    """Runs `sql` (%s placeholders) and returns the first row, on any of the supported kinds."""
    if hasattr(conn, "exec_driver_sql"):          # SQLAlchemy Connection
        return conn.exec_driver_sql(sql, tuple(params)).first()
    if hasattr(conn, "connection") and hasattr(conn, "get_bind") and not hasattr(conn, "cursor"):
        return _execute(conn.connection(), sql, params)  # SQLAlchemy Session
    if hasattr(conn, "cursor") and not hasattr(conn, "fetchone"):
        cur = conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            return cur.fetchone() if cur.description else None
        finally:
            cur.close()
    conn.execute(sql, tuple(params))              # a cursor
    return conn.fetchone() if conn.description else None


def _bytes(payload: Union[bytes, str]) -> bytes:
    return payload.encode() if isinstance(payload, str) else bytes(payload)


def enqueue(conn: Any, topic: str, key: Optional[str], payload: Union[bytes, str],
            headers: Optional[Mapping[str, str]] = None) -> str:
    """Inserts one outbox row in the caller's transaction; returns its id (the message's dedup id
    and "ferry-outbox-id" header). Messages with the same key are published in commit order."""
    h = json.dumps(dict(headers or {}))
    if key:
        row = _execute(conn, "INSERT INTO ferry_outbox (topic, key, payload, headers)"
                             " VALUES (%s, %s, %s, %s::jsonb) RETURNING id::text",
                       (topic, key, _bytes(payload), h))
    else:
        row = _execute(conn, "INSERT INTO ferry_outbox (topic, payload, headers)"
                             " VALUES (%s, %s, %s::jsonb) RETURNING id::text",
                       (topic, _bytes(payload), h))
    return row[0]


def process_once(conn: Any, consumer_group: str, message: Any, fn: Callable[[Any], None]) -> bool:
    """Runs fn(conn) in the caller's transaction only if `consumer_group` has not processed this
    message yet, and records it there. `message` is a ferry.Message (its outbox id, else
    topic/queue/offset) or an id string. Returns True if fn ran, False for a duplicate. Commit
    the transaction, then let the message be ACKed (the Subscriber ACKs when the handler
    returns): a crash in between redelivers it, and it is skipped."""
    message_id = message if isinstance(message, str) else message.id
    row = _execute(conn, "INSERT INTO ferry_inbox (consumer_group, message_id) VALUES (%s, %s)"
                         " ON CONFLICT DO NOTHING RETURNING 1", (consumer_group, message_id))
    if row is None:
        return False
    fn(conn)
    return True
