// The Node client against a real broker and PostgreSQL: scripts/client-test.sh node starts
// them and sets FERRY_BROKER, FERRY_TEST_DATABASE_URL and FERRY_TEST_BROKER_CTL.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const pg = require('pg');
const ferry = require('..');

const CTL = process.env.FERRY_TEST_BROKER_CTL;
assert.ok(CTL, 'run these tests with scripts/client-test.sh node (it starts PostgreSQL and a broker)');
const client = new ferry.Client();
test.after(() => client.close());

const unique = (p) => `${p}.${crypto.randomBytes(4).toString('hex')}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ctl = (what) => execFileSync(CTL, [what], { stdio: 'inherit' });

async function waitFor(what, cond, ms = 30000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function topic(queues = 4) {
  const name = unique('node');
  await client.admin.createTopic(name, { queues });
  return name;
}

// Reads topic with a fresh group until `want` arrived (and a little longer, for duplicates).
async function drain(t, want) {
  const got = [];
  const sub = client.subscribe(t, unique('g'), async (m) => {
    got.push({ queue: m.queue, offset: BigInt(m.offset), key: m.key, payload: m.payload.toString() });
  }, { maxWaitMs: 500 });
  await waitFor(`${want} messages`, () => got.length >= want, 60000);
  await sleep(500);
  await sub.stop();
  return got.sort((a, b) => a.queue - b.queue || (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
}

test('publish 10,000 batched across a broker kill: each stored exactly once, in order per key', async () => {
  const t = await topic();
  const pub = client.publisher({ retryForMs: 120000 });
  let done = 0;
  const publish = (from, to) => {
    const out = [];
    for (let i = from; i < to; i++) {
      const p = pub.publish(t, String(i), { key: `k${i % 50}` });
      p.then(() => done++, () => {});
      out.push(p);
    }
    return out;
  };
  const first = publish(0, 5000);
  await waitFor('half the first 5000', () => done >= 2500, 60000);
  ctl('kill');
  const second = publish(5000, 10000);
  await sleep(1000);
  ctl('start');
  const results = await Promise.all([...first, ...second]);
  await pub.close();
  assert.strictEqual(new Set(results.map((r) => `${r.queue}/${r.offset}`)).size, 10000);
  assert.ok(results.every((r) => !r.duplicate), 'a retry finding its own attempt is not a duplicate');
  const got = await drain(t, 10000);
  assert.strictEqual(got.length, 10000, 'every acknowledged message stored exactly once');
  assert.strictEqual(new Set(got.map((g) => g.payload)).size, 10000);
  const last = new Map();
  for (const g of got) {
    const n = Number(g.payload);
    assert.ok(!(last.get(g.key) > n), `key ${g.key}: ${n} stored after ${last.get(g.key)}`);
    last.set(g.key, n);
  }
});

test('a failed key is paused until resumed', async () => {
  const t = await topic(1);
  const pub = client.publisher();
  assert.strictEqual((await pub.publish(t, '1', { key: 'k' })).offset, '0');
  await assert.rejects(pub.publish(t, Buffer.alloc(5 << 20), { key: 'k' }), (e) => e.code === ferry.status.RESOURCE_EXHAUSTED);
  await assert.rejects(pub.publish(t, '3', { key: 'k' }), (e) =>
    e.code === ferry.status.FAILED_PRECONDITION && e.details.includes('resumePublish'));
  assert.strictEqual((await pub.publish(t, 'other', { key: 'j' })).offset, '1');
  pub.resumePublish(t, 'k');
  assert.strictEqual((await pub.publish(t, '4', { key: 'k' })).offset, '2');
});

test('a handler longer than the lease is not redelivered (lease extension)', async () => {
  const t = await topic(1);
  const pub = client.publisher();
  await Promise.all([0, 1, 2].map((i) => pub.publish(t, `slow ${i}`)));
  const seen = [];
  const sub = client.subscribe(t, unique('g'), async (m) => {
    seen.push(`${m.payload}@${m.deliveryAttempt}`);
    await sleep(4000); // four leases of one second
  }, { leaseMs: 1000, concurrency: 3 });
  await waitFor('3 acks', () => sub.stats.acked === 3);
  await sleep(2000);
  await sub.stop();
  assert.deepStrictEqual(seen.sort(), ['slow 0@1', 'slow 1@1', 'slow 2@1']);
  assert.ok(sub.stats.leaseExtensions > 0);
  assert.strictEqual(sub.stats.staleReceipts, 0);
});

test('flow control holds the outstanding limit', async () => {
  const t = await topic();
  const pub = client.publisher();
  await Promise.all(Array.from({ length: 200 }, (_, i) => pub.publish(t, String(i))));
  let running = 0;
  let most = 0;
  const sub = client.subscribe(t, unique('g'), async () => {
    running++;
    most = Math.max(most, running);
    await sleep(20);
    running--;
  }, { maxOutstandingMessages: 10, concurrency: 50 });
  await waitFor('200 acks', () => sub.stats.acked === 200, 60000);
  await sub.stop();
  assert.ok(sub.stats.maxOutstandingSeen <= 10, `outstanding ${sub.stats.maxOutstandingSeen}`);
  assert.ok(most <= 10 && most >= 2, `handlers at once: ${most}`);
});

test("a failing handler's messages reach the dead letters with the reason", async () => {
  const t = await topic(1);
  const group = unique('g');
  await client.admin.createGroup(group, { topics: [t], maxDeliveryAttempts: 2, backoffMs: [100] });
  const pub = client.publisher();
  await Promise.all(['ok', 'bad', 'reject'].map((p) => pub.publish(t, p)));
  const sub = client.subscribe(t, group, async (m) => {
    if (m.payload.toString() === 'bad') throw new TypeError('cannot parse order 7');
    if (m.payload.toString() === 'reject') throw new ferry.DeadLetter('schema v0 is not supported');
  });
  await waitFor('2 dead letters', () => sub.stats.deadLettered === 2);
  await sub.stop();
  const dead = Object.fromEntries((await client.admin.deadLetters(group)).map((d) => [d.payload.toString(), d.reason]));
  assert.deepStrictEqual(dead, {
    bad: 'max delivery attempts (2) reached: last outcome RETRY: TypeError: cannot parse order 7',
    reject: 'rejected: schema v0 is not supported',
  });
  assert.strictEqual(sub.stats.acked, 1);
  assert.strictEqual(sub.stats.handlerErrors, 2);
});

test('a checker reconnects after a broker restart and decides', async () => {
  const t = await topic(1);
  const group = unique('shop');
  const decided = new Set();
  const checker = client.onCheck(group, async (check) => {
    decided.add(check.check_ref);
    return check.check_ref === 'paid';
  });
  try {
    await checker.whenConnected();
    ctl('kill');
    ctl('start');
    await waitFor('the checker to reconnect', () => checker.connects >= 2 && checker.connected);
    for (const ref of ['paid', 'unpaid']) {
      const txn = await client.beginTransaction(group, { checkRef: ref });
      await txn.publish(t, { payload: `order ${ref}` }); // no commit: the producer "crashed"
    }
    await waitFor('both back-checks', () => decided.size === 2);
  } finally {
    await checker.stop();
  }
  assert.deepStrictEqual((await drain(t, 1)).map((g) => g.payload), ['order paid']);
});

test('the async iterator ACKs as the loop moves on', async () => {
  const t = await topic(1);
  const pub = client.publisher();
  await Promise.all(['a', 'b', 'c'].map((p) => pub.publish(t, p)));
  const group = unique('g');
  const got = [];
  for await (const m of client.messages(t, group, { maxWaitMs: 500 })) {
    got.push(m.payload.toString());
    if (got.length === 3) break;
  }
  assert.deepStrictEqual(got.sort(), ['a', 'b', 'c']);
  const lag = await client.admin.lag(group, t);
  // a, b ACKed as the loop moved on; c was current when the loop left: released, not ACKed
  assert.strictEqual(lag.queues.reduce((n, q) => n + Number(q.lag), 0), 1);
});

test('an ordered group handles a queue in order across a retry', async () => {
  const t = await topic(1);
  const group = unique('g');
  await client.admin.createGroup(group, { topics: [t], ordered: true });
  const pub = client.publisher();
  await Promise.all(Array.from({ length: 20 }, (_, i) => pub.publish(t, String(i), { key: 'one-key' })));
  const done = [];
  const attempts = new Map();
  const sub = client.subscribe(t, group, async (m) => {
    const n = Number(m.payload.toString());
    attempts.set(n, (attempts.get(n) || 0) + 1);
    await sleep(Math.random() * 5);
    if (n === 5 && attempts.get(n) === 1) throw new ferry.Retry('not yet', 200);
    done.push(n);
  }, { concurrency: 8 });
  await waitFor('20 messages', () => done.length >= 20);
  await sub.stop();
  assert.deepStrictEqual(done, Array.from({ length: 20 }, (_, i) => i));
  assert.strictEqual(attempts.get(5), 2);
  assert.ok(sub.stats.released > 0);
});

test('outbox and inbox across a rollback', async () => {
  const t = await topic(1);
  const group = unique('cart');
  const db = new pg.Client({ connectionString: process.env.FERRY_TEST_DATABASE_URL });
  await db.connect();
  try {
    await db.query('CREATE TABLE IF NOT EXISTS node_cart (order_id text PRIMARY KEY)');
    for (const [id, commit] of [['order-1', true], ['order-2', false], ['order-3', true]]) {
      await db.query('BEGIN');
      await ferry.enqueue(db, t, id, id, { type: 'created' });
      await db.query(commit ? 'COMMIT' : 'ROLLBACK');
    }
    const got = [];
    const sub = client.subscribe(t, group, async (m) => {
      const c = new pg.Client({ connectionString: process.env.FERRY_TEST_DATABASE_URL });
      await c.connect();
      try {
        await c.query('BEGIN');
        const first = await ferry.processOnce(c, group, m, (tx) =>
          tx.query('INSERT INTO node_cart VALUES ($1)', [m.payload.toString()]));
        const again = await ferry.processOnce(c, group, m, async () => { throw new Error('ran twice'); });
        await c.query('COMMIT');
        got.push(`${m.payload} ${first} ${again} ${m.headers.type}`);
      } finally {
        await c.end();
      }
    });
    await waitFor('the committed orders', () => got.length >= 2);
    await sleep(1000);
    await sub.stop();
    assert.deepStrictEqual(got.sort(), ['order-1 true false created', 'order-3 true false created']);
    const r = await db.query('SELECT count(*)::int AS n FROM ferry_inbox WHERE consumer_group = $1', [group]);
    assert.strictEqual(r.rows[0].n, 2);
  } finally {
    await db.end();
  }
});

test("errors carry the code and the broker's message", async () => {
  const pub = client.publisher();
  await assert.rejects(pub.publish('node.no-such-topic', 'x'), (e) =>
    e instanceof ferry.FerryError && e.code === ferry.status.NOT_FOUND && e.details.includes('node.no-such-topic'));
  // A size limit is not retried: it fails at once.
  const t = await topic(1);
  const started = Date.now();
  await assert.rejects(pub.publish(t, Buffer.alloc(5 << 20)), (e) =>
    e.code === ferry.status.RESOURCE_EXHAUSTED && e.details.includes('are allowed') && !e.retryable);
  assert.ok(Date.now() - started < 30000);
  assert.strictEqual((await pub.publish(t, 'fine')).offset, '0');
});

test('a token and mutual TLS', async () => {
  const env = process.env;
  const tls = { tlsCa: env.FERRY_TEST_TLS_CA, tlsClientCert: env.FERRY_TEST_TLS_CLIENT_CERT, tlsClientKey: env.FERRY_TEST_TLS_CLIENT_KEY };
  const address = env.FERRY_TEST_SECURE_BROKER;
  const secure = new ferry.Client({ address, token: env.FERRY_TEST_SECURE_TOKEN, ...tls });
  try {
    const t = unique('node.secure');
    await secure.admin.createTopic(t, { queues: 1 });
    const pub = secure.publisher();
    await pub.publish(t, 'over TLS');
    const got = [];
    for await (const m of secure.messages(t, unique('g'))) {
      got.push(m.payload.toString());
      m.ack();
      break;
    }
    assert.deepStrictEqual(got, ['over TLS']);
  } finally {
    secure.close();
  }
  const wrong = new ferry.Client({ address, token: 'ferry_wrong', ...tls });
  await assert.rejects(wrong.admin.listTopics(), (e) => e.code === ferry.status.UNAUTHENTICATED);
  wrong.close();
  const nocert = new ferry.Client({ address, token: '', tlsCa: env.FERRY_TEST_TLS_CA, timeoutMs: 5000 });
  await assert.rejects(nocert.admin.listTopics());
  nocert.close();
});
