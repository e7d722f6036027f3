// The web console in a real browser (Debian's Chromium, driven by playwright-core) against a
// real ferry-broker with --auth on a real PostgreSQL. Each test does what an operator does
// and checks what they would see, and that the change really happened (through ferryctl or
// the API, not only the page).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import {
  launchBrowser, createDatabase, startBroker, createAdmin, ferryctl, api, screenshotDir,
} from './harness.mjs';

let broker, browser, admin, viewer, conninfo;
const placed = {};  // key -> { queue, offset }

function produce(key, value, extra = []) {
  const out = ferryctl(broker, admin, ['produce', 'orders', '--key', key, '--value', value, ...extra]);
  const m = out.match(/queue (\d+) offset (\d+)/);
  placed[key] = { queue: Number(m[1]), offset: Number(m[2]) };
  return placed[key];
}

before(async () => {
  conninfo = createDatabase('ferry_console_test');
  broker = await startBroker(conninfo, ['--auth', 'true', '--auth-cache-ms', '100']);
  admin = createAdmin(conninfo, 'root');
  ferryctl(broker, admin, ['topic', 'create', 'orders', '--queues', '2']);
  produce('order-1', JSON.stringify({ order: 1, total: 12.5, items: ['tea'] }), ['--header', 'source=web']);
  produce('order-2', 'plain text order');
  produce('order-3', JSON.stringify({ order: 3 }));
  produce('order-4', JSON.stringify({ order: 4 }));
  produce('order-d', JSON.stringify({ order: 'd' }), ['--dedup-id', 'outbox-42']);
  // A binary payload, through the API the console itself uses.
  const bin = await api(broker, admin, 'Produce',
    { topic: 'orders', messages: [{ key: 'blob', payload: Buffer.from([0, 1, 2, 255, 254]).toString('base64') }] },
    'ferry.v1.Broker');
  assert.equal(bin.status, 200);
  placed.blob = { queue: bin.body.results[0].queue, offset: Number(bin.body.results[0].offset) };
  // billing: the oldest message of each queue dead-lettered, one more in flight, rest pending.
  ferryctl(broker, admin, ['group', 'create', 'billing', '--topic', 'orders']);
  const leased = ferryctl(broker, admin, ['consume', 'orders', '--group', 'billing', '--max', '10', '--no-commit', '--visibility-ms', '600000'])
    .trim().split('\n').map((l) => JSON.parse(l));
  const dead = leased.find((m) => m.key === 'order-2');
  ferryctl(broker, admin, ['commit', '--group', 'billing', '--dead-letter', 'bad payload: not JSON', dead.receipt]);
  const acked = leased.filter((m) => m.key === 'order-1' || m.key === 'order-3');
  ferryctl(broker, admin, ['commit', '--group', 'billing', ...acked.map((m) => m.receipt)]);
  // A read-only principal: may look at everything, change nothing.
  viewer = ferryctl(broker, admin, ['auth', 'create', 'viewer', '--grant', 'consume:topic:*',
    '--grant', 'consume:group:*', '--grant', 'consume:cluster']).trim().split('\n').pop().trim();
  // An undecided transaction.
  ferryctl(broker, admin, ['produce', 'orders', '--key', 'txn-order', '--value', 'held', '--txn-group', 'shop']);
  browser = await launchBrowser();
  if (screenshotDir) mkdirSync(screenshotDir, { recursive: true });
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

async function signedIn(token, path = '') {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('pageerror', (e) => { throw e; });
  await page.goto(`http://127.0.0.1:${broker.consolePort}/`);
  await page.fill('input[name=token]', token);
  await page.click('button:has-text("Sign in")');
  await page.waitForSelector('header .who');
  if (path) await page.goto(`http://127.0.0.1:${broker.consolePort}/#/${path}`);
  return page;
}

async function shot(page, name) {
  if (screenshotDir) await page.screenshot({ path: join(screenshotDir, `${name}.png`) });
}

const cell = (page, table, row, col) =>
  page.locator(`${table} tbody tr`).filter({ hasText: row }).locator('td').nth(col);

test('a broker with --auth asks for a token and refuses a wrong one', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(`http://127.0.0.1:${broker.consolePort}/`);
  await page.fill('input[name=token]', 'ferry_not_a_token');
  await page.click('button:has-text("Sign in")');
  await page.waitForSelector('.error:has-text("UNAUTHENTICATED")');
  await shot(page, 'sign-in');
  // The API itself refuses calls without a token, whatever the page does.
  const r = await api(broker, '', 'ListTopics');
  assert.equal(r.status, 401);
  assert.equal(r.body.code, 'UNAUTHENTICATED');
  await page.close();
});

test('the overview shows topics, groups, brokers and the database, and updates live', async () => {
  const page = await signedIn(admin);
  await page.waitForSelector('#overview-topics td:has-text("orders")');
  assert.equal(await cell(page, '#overview-topics', 'orders', 2).innerText(), '6');  // half message: not yet
  // billing: 6 stored: 2 acked, 1 dead, 3 in flight (order-4, order-d, blob).
  assert.equal(await cell(page, '#overview-groups', 'billing', 2).innerText(), '0');  // backlog
  assert.equal(await cell(page, '#overview-groups', 'billing', 4).innerText(), '3');  // in flight
  assert.equal(await cell(page, '#overview-groups', 'billing', 6).innerText(), '1');  // dead letters
  assert.match(await page.locator('#overview-database').innerText(), /PostgreSQL\s+15/);
  assert.match(await page.locator('#overview-brokers').innerText(), /\bup\b/);
  await shot(page, 'overview');
  // Live: produced elsewhere, seen here without a reload.
  produce('order-5', '{"order":5}');
  produce('order-6', '{"order":6}');
  await page.waitForFunction(() => {
    const row = [...document.querySelectorAll('#overview-topics tbody tr')].find((r) => r.textContent.includes('orders'));
    return row && row.querySelectorAll('td')[2].textContent === '8';
  }, null, { timeout: 15000 });
  assert.equal(await cell(page, '#overview-groups', 'billing', 2).innerText(), '2');  // backlog now
  // ... and falls once billing consumes them.
  const got = ferryctl(broker, admin, ['consume', 'orders', '--group', 'billing', '--max', '10', '--wait-ms', '2000']);
  assert.match(got, /"key":"order-5"/);
  await page.waitForFunction(() => {
    const row = [...document.querySelectorAll('#overview-groups tbody tr')].find((r) => r.textContent.includes('billing'));
    return row && row.querySelectorAll('td')[2].textContent === '0';
  }, null, { timeout: 15000 });
  await page.close();
});

const positions = () =>
  JSON.parse(ferryctl(broker, admin, ['--json', 'lag', '--group', 'billing'])).queues.map((q) => ({
    queue: q.queue, committed: q.committed_offset, delivered: q.delivered_offset, in_flight: q.in_flight,
  }));

test('the message browser pages by offset, filters by key and dedup id, and never consumes', async () => {
  const before = positions();
  const { queue } = placed['order-1'];
  const page = await signedIn(admin, `messages?topic=orders&queue=${queue}&from=0`);
  await page.waitForSelector('#messages tbody tr');
  const keys = await page.locator('#messages tbody tr td:nth-child(2)').allInnerTexts();
  const expected = Object.entries(placed).filter(([, p]) => p.queue === queue).map(([k]) => k);
  assert.deepEqual(keys.sort(), expected.sort());
  await shot(page, 'messages');
  // By key, without naming a queue: the broker reads the queue the key is routed to.
  await page.fill('input[name=queue]', '');
  await page.fill('input[name=key]', 'order-1');
  await page.click('button:has-text("Show messages")');
  await page.waitForFunction(() => document.querySelectorAll('#messages tbody tr').length === 1);
  assert.equal(await page.locator('#messages tbody tr td:nth-child(2)').innerText(), 'order-1');
  assert.match(await page.locator('#page-info').innerText(), new RegExp(`^Queue ${queue} of 2`));
  // Small pages: "Next page" goes on from where the last one ended.
  const r = await api(broker, admin, 'PeekMessages', { topic: 'orders', queue, from_offset: '0', max_messages: 1 });
  assert.equal(r.body.messages.length, 1);
  assert.equal(Number(r.body.next_offset), Number(r.body.messages[0].offset) + 1);
  // By dedup id (the relay's outbox id), across the queue it landed in.
  const d = placed['order-d'];
  await page.fill('input[name=key]', '');
  await page.fill('input[name=queue]', String(d.queue));
  await page.fill('input[name=dedup_id]', 'outbox-42');
  await page.click('button:has-text("Show messages")');
  await page.waitForFunction(() => document.querySelector('#messages tbody tr td:nth-child(2)')?.textContent === 'order-d');
  assert.equal(await page.locator('#messages tbody tr').count(), 1);
  // Nothing was consumed by looking.
  assert.deepEqual(positions(), before);
  await page.close();
});

test('a message shows its payload as JSON, text or hex, its headers and where it is for each group', async () => {
  const o1 = placed['order-1'];
  const page = await signedIn(admin, `messages/orders/${o1.queue}/${o1.offset}`);
  await page.waitForSelector('#payload');
  assert.equal(await page.locator('#payload').innerText(),
    JSON.stringify({ order: 1, total: 12.5, items: ['tea'] }, null, 2));
  assert.match(await page.locator('#headers').innerText(), /source\s+web/);
  assert.match(await cell(page, '#whereabouts', 'billing', 1).innerText(), /^acked$/);
  await shot(page, 'message');
  const o2 = placed['order-2'];
  await page.goto(`http://127.0.0.1:${broker.consolePort}/#/messages/orders/${o2.queue}/${o2.offset}`);
  await page.waitForSelector('#whereabouts td:has-text("dead-lettered")');
  assert.match(await page.locator('#whereabouts').innerText(), /bad payload: not JSON/);
  assert.equal(await page.locator('#payload').innerText(), 'plain text order');
  const blob = placed.blob;
  await page.goto(`http://127.0.0.1:${broker.consolePort}/#/messages/orders/${blob.queue}/${blob.offset}`);
  await page.waitForSelector('#whereabouts td:has-text("in flight")');
  assert.match(await page.locator('#payload').innerText(), /^00000000 {2}00 01 02 ff fe/);
  await page.close();
});

test('dead letters: select, redrive to the group, and the message is delivered again', async () => {
  const page = await signedIn(admin, 'groups/billing/dead-letters');
  await page.waitForSelector('#dead-letters td:has-text("bad payload: not JSON")');
  await shot(page, 'dead-letters');
  await page.check('#dead-letters tbody tr input[type=checkbox]');
  await page.click('button:has-text("Redrive to billing")');
  await page.click('.modal button:has-text("Redrive 1")');
  await page.waitForSelector('.notice:has-text("Redrove 1")');
  await page.waitForSelector('#dead-letters td:has-text("No dead letters.")');
  const again = ferryctl(broker, admin, ['consume', 'orders', '--group', 'billing', '--max', '10', '--wait-ms', '2000']);
  assert.match(again, /"key":"order-2"/);
  await page.close();
});

test('a reset shows what it redelivers before it moves the position', async () => {
  const page = await signedIn(admin, 'groups/billing');
  await page.waitForSelector('#group-reset');
  await page.selectOption('#group-reset select[name=to]', 'earliest');
  await page.click('button:has-text("Preview reset")');
  await page.waitForSelector('#reset-preview');
  const text = await page.locator('.modal').innerText();
  assert.match(text, /redelivers/);
  assert.match(await page.locator('#reset-summary').innerText(), /^\d+ messages delivered again, 0 skipped\.$/);
  await shot(page, 'group-reset');
  // The preview changed nothing.
  const lagBefore = JSON.parse(ferryctl(broker, admin, ['--json', 'lag', '--group', 'billing']));
  assert.ok(lagBefore.queues.some((q) => Number(q.delivered_offset) > 0));
  await page.click('.modal button:has-text("Reset position")');
  await page.waitForSelector('.notice:has-text("Position reset.")');
  const lagAfter = JSON.parse(ferryctl(broker, admin, ['--json', 'lag', '--group', 'billing']));
  assert.ok(lagAfter.queues.every((q) => Number(q.delivered_offset) === 0));
  await page.close();
});

test('an undecided transaction is committed with a required reason, kept in its audit trail', async () => {
  const page = await signedIn(admin, 'transactions');
  await page.click('button:has-text("undecided")');
  await page.waitForSelector('#transactions td:has-text("shop")');
  // Opened: what committing would make visible, before deciding.
  await page.click('#transactions tbody button.link');
  await page.waitForSelector('.txn-messages td:has-text("txn-order")');
  assert.match(await page.locator('.txn-messages').innerText(), /orders\s+txn-order\s+held/);
  await shot(page, 'transactions');
  await page.click('#transactions button:has-text("Commit…")');
  assert.equal(await page.isDisabled('.modal button[type=submit]'), true);  // no reason yet
  await page.fill('.modal input[name=reason]', 'order paid, checked by hand');
  await page.click('.modal button[type=submit]');
  await page.waitForSelector('.notice:has-text("committed")');
  const txns = ferryctl(broker, admin, ['--json', 'txn', 'list', '--group', 'shop'])
    .trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(txns[0].state, 'TXN_COMMITTED');
  assert.ok(JSON.stringify(txns[0]).includes('order paid, checked by hand'));
  await page.close();
});

test('topics: create, change retention, produce a test message, delete after typing the name', async () => {
  const page = await signedIn(admin, 'topics');
  await page.waitForSelector('#topics td:has-text("orders")');
  await shot(page, 'topics');
  await page.fill('#create-topic input[name=name]', 'scratch');
  await page.fill('#create-topic input[name=queues]', '3');
  await page.click('button:has-text("Create topic")');
  await page.waitForSelector('#topics td:has-text("scratch")');
  await page.click('#topics a:has-text("scratch")');
  await page.waitForSelector('#queues tbody tr >> nth=2');
  await page.fill('#topic-settings input[name=retention]', '2');
  await page.click('button:has-text("Save settings")');
  await page.waitForSelector('#topic-settings .notice');
  assert.match(ferryctl(broker, admin, ['topic', 'describe', 'scratch']), /2h|7200000/);
  await page.fill('#produce input[name=key]', 'test-key');
  await page.fill('#produce textarea[name=headers]', 'trace: abc');
  await page.fill('#produce textarea[name=payload]', 'hello from the console');
  await page.click('#produce button:has-text("Produce")');
  await page.waitForSelector('#produce .notice:has-text("Stored at queue")');
  const peek = ferryctl(broker, admin, ['peek', 'scratch', '--json']);
  assert.match(peek, /hello from the console/);
  assert.match(peek, /"trace":"abc"/);
  await shot(page, 'topic');
  await page.click('button:has-text("Delete topic…")');
  assert.equal(await page.isDisabled('.modal button[type=submit]'), true);
  await page.fill('.modal input[name=confirm-text]', 'scratch');
  await page.click('.modal button[type=submit]');
  await page.waitForSelector('.notice:has-text("Topic scratch deleted.")');
  assert.doesNotMatch(ferryctl(broker, admin, ['topic', 'list']), /scratch/);
  await page.close();
});

test('a read-only principal sees everything and is offered no change; the API refuses changes too', async () => {
  const page = await signedIn(viewer);
  await page.waitForSelector('.badge:has-text("read-only")');
  await page.waitForSelector('#overview-topics td:has-text("orders")');
  await page.goto(`http://127.0.0.1:${broker.consolePort}/#/topics/orders`);
  await page.waitForSelector('#queues');
  assert.equal(await page.locator('button:has-text("Delete topic")').count(), 0);
  assert.equal(await page.locator('#topic-settings').count(), 0);
  await page.goto(`http://127.0.0.1:${broker.consolePort}/#/groups/billing`);
  await page.waitForSelector('#lag');
  assert.equal(await page.locator('#group-reset').count(), 0);
  // The page hides the buttons; the broker is what refuses (same check as gRPC).
  const r = await page.evaluate(async () => {
    const res = await fetch('api/ferry.v1.Admin/DeleteTopic', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + sessionStorage.getItem('ferry-token') },
      body: JSON.stringify({ name: 'orders' }),
    });
    return { status: res.status, body: await res.json() };
  });
  assert.equal(r.status, 403);
  assert.equal(r.body.code, 'PERMISSION_DENIED');
  assert.match(ferryctl(broker, admin, ['topic', 'list']), /orders/);
  await page.close();
});

test('the groups page lists every group with its policy', async () => {
  const page = await signedIn(admin, 'groups');
  await page.waitForSelector('#groups td:has-text("billing")');
  assert.match(await page.locator('#groups tbody tr').filter({ hasText: 'billing' }).innerText(), /orders\s+16\s+no\s+earliest/);
  await shot(page, 'groups');
  await page.close();
});

test('lag history is recorded in PostgreSQL and drawn for the group', async () => {
  // Samples every second (--stats-interval-ms 1000): wait for a few.
  let points = [];
  for (let i = 0; i < 50 && points.length < 3; i++) {
    await new Promise((r) => setTimeout(r, 200));
    points = (await api(broker, admin, 'GetHistory', { group: 'billing' })).body.points ?? [];
  }
  assert.ok(points.length >= 3, `only ${points.length} samples`);
  assert.ok(points.every((p) => p.topic === 'orders'));
  const viewerHistory = await api(broker, viewer, 'GetHistory', { group: 'billing' });
  assert.equal(viewerHistory.status, 200);
  const page = await signedIn(admin, 'groups/billing');
  await page.waitForSelector('#group-history canvas');
  assert.ok(await page.locator('#group-history canvas').count() >= 4);
  await shot(page, 'group');
  await page.close();
});

test('bad requests get a precise status and message, and change nothing', async () => {
  const before = [await api(broker, admin, 'ListTopics'), await api(broker, admin, 'GetGroupLag', { group: 'billing' })];
  const cases = [
    ['PeekMessages', { topic: 'orders', queue: 9 }, 400, /has 2 queues/],
    ['PeekMessages', { topic: 'orders', max_messages: 5000 }, 400, /max_messages/],
    ['GetHistory', {}, 400, /name a group, a topic, or both/],
    ['GetHistory', { group: 'nobody' }, 404, /nobody/],
    ['DescribeTopic', { name: 'no such' }, 400, /name/],
    ['CreateTopic', { topic: { name: 'x', bogus: 1 } }, 400, /bogus/],
  ];
  for (const [method, body, status, message] of cases) {
    const r = await api(broker, admin, method, body);
    assert.equal(r.status, status, `${method} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.message, message);
  }
  const consume = await api(broker, admin, 'Consume', { group: 'g', topic: 'orders' }, 'ferry.v1.Broker');
  assert.equal(consume.status, 404);  // the console never takes a lease
  const notJson = await fetch(`http://127.0.0.1:${broker.consolePort}/api/ferry.v1.Admin/ListTopics`, {
    method: 'POST', headers: { Authorization: 'Bearer ' + admin }, body: '{"topic": ',
  });
  assert.equal(notJson.status, 400);
  assert.match((await notJson.json()).message, /not a ferry.v1.ListTopicsRequest in JSON/);
  const after = [await api(broker, admin, 'ListTopics'), await api(broker, admin, 'GetGroupLag', { group: 'billing' })];
  assert.deepEqual(after.map((r) => r.body.topics ?? r.body.queues.map((q) => [q.end_offset, q.delivered_offset])),
    before.map((r) => r.body.topics ?? r.body.queues.map((q) => [q.end_offset, q.delivered_offset])));
});

test('over TLS: the console is served with the broker\'s certificate, and only over TLS', async () => {
  const { execFileSync } = await import('node:child_process');
  const { readFileSync } = await import('node:fs');
  const https = await import('node:https');
  const dir = broker.dir;
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const tls = await startBroker(createDatabase('ferry_console_tls'),
    ['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')]);
  try {
    const ca = readFileSync(join(dir, 'cert.pem'));
    const who = await new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: tls.consolePort, path: '/api/ferry.v1.Admin/WhoAmI',
        method: 'POST', ca, headers: { 'Content-Type': 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
      });
      req.on('error', reject);
      req.end('{}');
    });
    assert.equal(who.status, 200);
    assert.equal(who.body.principal, 'anonymous');
    await assert.rejects(fetch(`http://127.0.0.1:${tls.consolePort}/`));  // no plain HTTP
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`https://127.0.0.1:${tls.consolePort}/`);
    await page.waitForSelector('h2:has-text("Overview")');
    await context.close();
  } finally {
    await tls.stop();
  }
});
