// Ferry from Node.js with the client library (clients/node): publish, subscribe with an async
// iterator, a bad request, and a transaction decided by a back-check.
//
//   FERRY_BROKER=127.0.0.1:7420 ./run.sh        # FERRY_TOKEN too if the broker runs --auth
'use strict';
const assert = require('assert');
const crypto = require('crypto');
const ferry = require('ferry-client');

const TOPIC = 'example.node.' + crypto.randomBytes(4).toString('hex');
const ORDERS = TOPIC + '.orders'; // the transaction's topic
const PRODUCER_GROUP = 'node-shop-' + crypto.randomBytes(4).toString('hex');

// Reads `want` messages (or until timeoutMs) with an async iterator.
async function collect(client, topic, want, timeoutMs = 20000) {
  const got = [];
  const deadline = Date.now() + timeoutMs;
  if (want === 0) {
    const sub = client.subscribe(topic, 'node-readers', async (m) => { got.push(m.payload.toString()); });
    await new Promise((r) => setTimeout(r, timeoutMs));
    await sub.stop();
    return got;
  }
  for await (const m of client.messages(topic, 'node-readers', { maxWaitMs: 500 })) {
    got.push(m.payload.toString());
    m.ack(); // (or it is ACKed when the loop asks for the next one)
    if (got.length >= want || Date.now() > deadline) break;
  }
  return got;
}

async function main() {
  const client = new ferry.Client(); // FERRY_BROKER, FERRY_TOKEN, FERRY_TLS_* from the environment
  await client.admin.createTopic(TOPIC, { queues: 2 });
  await client.admin.createTopic(ORDERS, { queues: 1 });
  console.log(`topic ${TOPIC} ready`);

  const pub = client.publisher(); // batches; retries with dedup ids
  const where = await Promise.all([0, 1, 2].map((i) =>
    pub.publish(TOPIC, `event ${i}`, { key: 'order-42', dedupId: `order-42-${i}` })));
  const again = await pub.publish(TOPIC, 'event 0', { key: 'order-42', dedupId: 'order-42-0' });
  await pub.close();
  console.log(`published 3 messages on queue ${where[0].queue}: offsets ${where.map((w) => w.offset)}`);
  assert.ok(again.duplicate && again.offset === where[0].offset);
  console.log('re-sent message 0 with its dedup id: duplicate=true, not stored again');

  const got = await collect(client, TOPIC, 3);
  assert.deepStrictEqual(got.sort(), ['event 0', 'event 1', 'event 2']);
  console.log(`received and ACKed: ${got}`);

  try { // errors carry the gRPC code and the broker's message
    await client.admin.createTopic('bad topic!');
    throw new Error('a bad topic name must be refused');
  } catch (e) {
    assert.ok(e instanceof ferry.FerryError && e.code === ferry.status.INVALID_ARGUMENT, e);
    console.log(`bad input: ${e.message}`);
  }

  // A transaction: the half message stays invisible; the producer "crashes" after its local
  // commit; the broker's back-check asks the checker, which finds the order committed.
  const committed = new Set();
  const checker = client.onCheck(PRODUCER_GROUP, (check) => (committed.has(check.check_ref) ? true : null));
  const txn = await client.beginTransaction(PRODUCER_GROUP, { checkRef: 'order-77' });
  await txn.publish(ORDERS, { payload: 'order 77 paid', key: 'order-77' });
  console.log(`transaction ${txn.id}: half message stored, invisible`);
  committed.add('order-77'); // the local commit; no txn.commit(): "crashed"
  assert.deepStrictEqual(await collect(client, ORDERS, 1), ['order 77 paid']);
  console.log('back-check answered COMMIT: the message was delivered');
  await checker.stop();

  const other = await client.beginTransaction(PRODUCER_GROUP);
  await other.publish(ORDERS, { payload: 'never' });
  await other.rollback();
  assert.strictEqual(other.state, 'TXN_ROLLED_BACK');
  assert.deepStrictEqual(await collect(client, ORDERS, 0, 1500), []);
  console.log('rolled back transaction: nothing delivered');
  client.close();
  console.log('node example: ok');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
