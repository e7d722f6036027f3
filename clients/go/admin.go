package ferry

import (
	"context"
	"errors"

	"github.com/ferry/ferry-go/ferrypb"
)

// Admin: thin helpers over the Admin service. For anything else use c.AdminStub() with a
// context from c.Context (token and deadline).
type Admin struct{ c *Client }

// Admin returns the admin helpers.
func (c *Client) Admin() *Admin { return &Admin{c} }

// CreateTopic creates a topic (zero fields: the broker's defaults). existOK: an existing topic
// is returned instead of ALREADY_EXISTS.
func (a *Admin) CreateTopic(ctx context.Context, t *ferrypb.TopicConfig, existOK bool) (*ferrypb.TopicConfig, error) {
	resp, err := call(a.c, ctx, a.c.admin.CreateTopic, &ferrypb.CreateTopicRequest{Topic: t})
	if err != nil {
		if existOK && errors.Is(err, ErrAlreadyExists) {
			d, derr := call(a.c, ctx, a.c.admin.DescribeTopic, &ferrypb.DescribeTopicRequest{Name: t.Name})
			if derr != nil {
				return nil, derr
			}
			return d.Topic, nil
		}
		return nil, err
	}
	return resp.Topic, nil
}

// ListTopics lists every topic.
func (a *Admin) ListTopics(ctx context.Context) ([]*ferrypb.TopicConfig, error) {
	resp, err := call(a.c, ctx, a.c.admin.ListTopics, &ferrypb.ListTopicsRequest{})
	if err != nil {
		return nil, err
	}
	return resp.Topics, nil
}

// DeleteTopic deletes a topic and its messages.
func (a *Admin) DeleteTopic(ctx context.Context, name string) error {
	_, err := call(a.c, ctx, a.c.admin.DeleteTopic, &ferrypb.DeleteTopicRequest{Name: name})
	return err
}

// CreateGroup creates a consumer group with its delivery policy, positioned on topics.
func (a *Admin) CreateGroup(ctx context.Context, g *ferrypb.GroupConfig, topics ...string) (*ferrypb.GroupConfig, error) {
	resp, err := call(a.c, ctx, a.c.admin.CreateGroup, &ferrypb.CreateGroupRequest{Group: g, Topics: topics})
	if err != nil {
		return nil, err
	}
	return resp.Group, nil
}

// Lag is the group's progress per queue (topic "" : every topic it reads).
func (a *Admin) Lag(ctx context.Context, group, topic string) (*ferrypb.GetGroupLagResponse, error) {
	return call(a.c, ctx, a.c.admin.GetGroupLag, &ferrypb.GetGroupLagRequest{Group: group, Topic: topic})
}

// DeadLetters lists every dead letter of the group (oldest first), all pages.
func (a *Admin) DeadLetters(ctx context.Context, group, topic string) ([]*ferrypb.DeadLetter, error) {
	var out []*ferrypb.DeadLetter
	token := ""
	for {
		page, err := call(a.c, ctx, a.c.admin.ListDeadLetters, &ferrypb.ListDeadLettersRequest{
			Group: group, Topic: topic, PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		out = append(out, page.DeadLetters...)
		if token = page.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// RedriveDeadLetters sends dead letters back to the group (toTopic "") or to another topic.
func (a *Admin) RedriveDeadLetters(ctx context.Context, group string, ids []uint64, all bool, toTopic string) (*ferrypb.RedriveDeadLettersResponse, error) {
	return call(a.c, ctx, a.c.admin.RedriveDeadLetters, &ferrypb.RedriveDeadLettersRequest{
		Group: group, Ids: ids, All: all, ToTopic: toTopic})
}

// Transactions lists transactions (state UNSPECIFIED: all states).
func (a *Admin) Transactions(ctx context.Context, state ferrypb.TransactionState, producerGroup string, limit uint32) ([]*ferrypb.TransactionInfo, error) {
	resp, err := call(a.c, ctx, a.c.admin.ListTransactions, &ferrypb.ListTransactionsRequest{
		State: state, ProducerGroup: producerGroup, Limit: limit})
	if err != nil {
		return nil, err
	}
	return resp.Transactions, nil
}

// ResolveTransaction decides a transaction by hand; reason is kept in the audit trail.
func (a *Admin) ResolveTransaction(ctx context.Context, id string, d Decision, reason string) (ferrypb.TransactionState, error) {
	resp, err := call(a.c, ctx, a.c.admin.ResolveTransaction, &ferrypb.ResolveTransactionRequest{
		TransactionId: id, Decision: d, Reason: reason})
	if err != nil {
		return 0, err
	}
	return resp.State, nil
}
