// Ferry from Node.js: produce, consume-and-commit, and a transaction decided by a back-check.
//
// Uses @grpc/grpc-js with @grpc/proto-loader, which reads proto/ at run time (no generated code).
//
//   FERRY_BROKER=127.0.0.1:7420 ./run.sh        # FERRY_TOKEN too if the broker runs --auth
'use strict';
const path = require('path');
const crypto = require('crypto');
const assert = require('assert');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const PROTO_DIR = process.env.FERRY_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');
const defs = loader.loadSync(['ferry/v1/broker.proto', 'ferry/v1/admin.proto'], {
  includeDirs: [PROTO_DIR],
  keepCase: true,   // field names as in the .proto files
  longs: String,    // uint64 offsets as strings: no precision lost
  enums: String,
  defaults: true,
});
const ferry = grpc.loadPackageDefinition(defs).ferry.v1;

const BROKER = process.env.FERRY_BROKER || '127.0.0.1:7420';
const TOPIC = 'example.node.' + crypto.randomBytes(4).toString('hex');
const GROUP = 'node-readers';
const PRODUCER_GROUP = 'node-shop-' + crypto.randomBytes(4).toString('hex');

function metadata() {
  const md = new grpc.Metadata();
  if (process.env.FERRY_TOKEN) md.set('authorization', 'Bearer ' + process.env.FERRY_TOKEN);
  return md;
}

// A unary call as a promise, with a 10 s deadline.
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata(), { deadline: Date.now() + 10000 }, (err, resp) =>
      err ? reject(err) : resolve(resp));
  });
}

async function consume(broker, want) {
  const got = [];
  for (let i = 0; i < 20; i++) {
    const resp = await unary(broker, 'Consume',
      { group: GROUP, topic: TOPIC, max_messages: 10, max_wait_ms: 1000 });
    if (resp.messages.length === 0) {
      if (got.length >= want) break;
      continue;
    }
    for (const m of resp.messages) got.push(m.payload.toString());
    const commit = await unary(broker, 'Commit', {
      group: GROUP,
      entries: resp.messages.map((m) => ({ receipt: m.receipt, outcome: 'ACK' })),
    });
    for (const r of commit.results) assert.strictEqual(r.status, 'COMMITTED');
  }
  return got;
}

// Answers back-checks of PRODUCER_GROUP on a bidirectional stream.
function startChecker(broker, decide) {
  const answered = new Map();  // check_ref -> decision
  const stream = broker.CheckTransaction(metadata());
  stream.on('data', (resp) => {
    const check = resp.check;
    if (!check) return;  // a refused answer (resp.rejected): nothing to answer
    const decision = decide(check);
    answered.set(check.check_ref, decision);
    stream.write({ answer: { transaction_id: check.transaction_id, check_id: check.check_id,
                             decision } });
  });
  stream.on('error', (err) => {
    if (err.code !== grpc.status.CANCELLED) throw err;
  });
  stream.write({ subscribe: { producer_groups: [PRODUCER_GROUP], checker_id: 'node-example' } });
  return { answered, close: () => stream.cancel() };
}

async function main() {
  const admin = new ferry.Admin(BROKER, grpc.credentials.createInsecure());
  const broker = new ferry.Broker(BROKER, grpc.credentials.createInsecure());

  try {
    await unary(admin, 'CreateTopic', { topic: { name: TOPIC, queues: 2 } });
  } catch (err) {
    if (err.code !== grpc.status.ALREADY_EXISTS) throw err;
  }
  console.log(`topic ${TOPIC} ready`);

  const messages = [0, 1, 2].map((i) => ({
    key: 'order-42', payload: Buffer.from(`event ${i}`), headers: { type: 'created' },
    dedup_id: `order-42-${i}`,
  }));
  const produced = await unary(broker, 'Produce', { topic: TOPIC, messages });
  console.log(`produced 3 messages on queue ${produced.results[0].queue}: offsets ` +
              produced.results.map((r) => r.offset).join(' '));

  const got = await consume(broker, 3);
  assert.deepStrictEqual(got, ['event 0', 'event 1', 'event 2']);
  console.log(`consumed and ACKed in order: ${JSON.stringify(got)}`);

  try {
    await unary(broker, 'Produce', { topic: 'bad topic!' });
    assert.fail('a bad topic name must be refused');
  } catch (err) {
    assert.strictEqual(err.code, grpc.status.INVALID_ARGUMENT);
    console.log(`bad input: INVALID_ARGUMENT: ${err.details}`);
  }

  // A transaction whose producer "crashes" after its local commit: the back-check decides.
  const committedOrders = new Set();
  const checker = startChecker(broker, (check) =>
    committedOrders.has(check.check_ref) ? 'TRANSACTION_COMMIT' : 'TRANSACTION_UNKNOWN');
  const half = await unary(broker, 'Produce', {
    topic: TOPIC,
    transactional: { producer_group: PRODUCER_GROUP, check_ref: 'order-77' },
    messages: [{ key: 'order-77', payload: Buffer.from('order 77 paid') }],
  });
  assert.deepStrictEqual(await consume(broker, 0), []);
  console.log(`transaction ${half.transaction_id}: half message stored, invisible`);
  committedOrders.add('order-77');
  assert.deepStrictEqual(await consume(broker, 1), ['order 77 paid']);
  assert.strictEqual(checker.answered.get('order-77'), 'TRANSACTION_COMMIT');
  console.log('back-check answered COMMIT: the message was delivered');

  const other = await unary(broker, 'Produce', {
    topic: TOPIC,
    transactional: { producer_group: PRODUCER_GROUP },
    messages: [{ payload: Buffer.from('never') }],
  });
  const ended = await unary(broker, 'EndTransaction',
    { transaction_id: other.transaction_id, decision: 'TRANSACTION_ROLLBACK' });
  assert.strictEqual(ended.state, 'TXN_ROLLED_BACK');
  assert.deepStrictEqual(await consume(broker, 0), []);
  console.log('rolled back transaction: nothing delivered');

  checker.close();
  admin.close();
  broker.close();
  console.log('node example: ok');
}

main().catch((err) => {
  console.error(`node example failed: ${err.stack || err}`);
  process.exit(1);
});
