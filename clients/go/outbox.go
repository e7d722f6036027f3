package ferry

import (
	"context"
	"database/sql"
	"encoding/json"
)

// Queryer is what the outbox and inbox helpers need: *sql.Tx (the usual), *sql.Conn or
// *sql.DB, with lib/pq or pgx's stdlib driver (both take $1 placeholders).
type Queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Enqueue inserts one ferry_outbox row in the caller's transaction; ferry-relay publishes it
// after commit (never if it rolls back). Returns the row id: the message's dedup id and its
// "ferry-outbox-id" header. Messages with the same key are published in commit order. The
// tables are created by `ferry-relay migrate`, the same as the C++ helpers'.
func Enqueue(ctx context.Context, tx Queryer, topic, key string, payload []byte, headers map[string]string) (string, error) {
	if headers == nil {
		headers = map[string]string{}
	}
	h, err := json.Marshal(headers)
	if err != nil {
		return "", err
	}
	var id string
	if key == "" {
		err = tx.QueryRowContext(ctx, "INSERT INTO ferry_outbox (topic, payload, headers)"+
			" VALUES ($1, $2, $3::jsonb) RETURNING id::text", topic, payload, string(h)).Scan(&id)
	} else {
		err = tx.QueryRowContext(ctx, "INSERT INTO ferry_outbox (topic, key, payload, headers)"+
			" VALUES ($1, $2, $3, $4::jsonb) RETURNING id::text", topic, key, payload, string(h)).Scan(&id)
	}
	return id, err
}

// ProcessOnce runs fn in the caller's transaction only if consumerGroup has not processed
// messageID yet (Delivered.ID()), and records it there. true: fn ran; false: a duplicate. Commit
// the transaction, then let the message be ACKed (return nil from the Handler): a crash in
// between redelivers it, and it is skipped. An error from fn is returned (roll back then).
func ProcessOnce(ctx context.Context, tx Queryer, consumerGroup, messageID string, fn func() error) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, "INSERT INTO ferry_inbox (consumer_group, message_id) VALUES ($1, $2)"+
		" ON CONFLICT DO NOTHING RETURNING 1", consumerGroup, messageID).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, fn()
}
