// Ferry's Node.js client: Publisher (batching, retries with dedup ids, order per key),
// Subscriber (flow control, lease extension, batched commits; a callback or an async
// iterator), transactions with a back-check Checker, outbox/inbox helpers for `pg`, admin.
//
//   const { Client } = require('ferry-client');
//   const client = new Client();                 // FERRY_BROKER, FERRY_TOKEN, FERRY_TLS_* ...
//   const pub = client.publisher();
//   await pub.publish('orders', 'hello', { key: 'order-1' });
//   const sub = client.subscribe('orders', 'billing', async (m) => console.log(m.payload.toString()));
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const crypto = require('crypto');
const zlib = require('zlib');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

// The .proto files: packed into the package (npm pack), or the repository's proto/.
function protoDir() {
  if (process.env.FERRY_PROTO_DIR) return process.env.FERRY_PROTO_DIR;
  const packed = path.join(__dirname, 'proto');
  if (fs.existsSync(path.join(packed, 'ferry', 'v1', 'broker.proto'))) return packed;
  return path.join(__dirname, '..', '..', 'proto');
}

const definitions = loader.loadSync(['ferry/v1/broker.proto', 'ferry/v1/admin.proto'], {
  includeDirs: [protoDir()],
  keepCase: true, // field names as in the .proto files
  longs: String, // uint64 offsets as strings: no digit lost
  enums: String,
  defaults: true,
  oneofs: true,
});
const pb = grpc.loadPackageDefinition(definitions).ferry.v1;

const MAX_MESSAGE_BYTES = 64 << 20;
const SIZE_LIMIT_WORDS = ['are allowed', 'larger than', 'at most'];

/** A failed call: `code` is the gRPC status code (grpc.status), `message` the broker's text. */
class FerryError extends Error {
  constructor(code, details) {
    super(`${grpc.status[code] || code}: ${details}`);
    this.name = 'FerryError';
    this.code = code;
    this.details = details;
  }
  get retryable() {
    return isRetryable(this);
  }
}

function isRetryable(err) {
  const code = err && err.code;
  if (code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED || code === grpc.status.ABORTED) {
    return true;
  }
  if (code === grpc.status.RESOURCE_EXHAUSTED) {
    const text = err.details || err.message || '';
    return !SIZE_LIMIT_WORDS.some((w) => text.includes(w));
  }
  return false;
}

function wrap(err) {
  if (err instanceof FerryError) return err;
  if (err && typeof err.code === 'number') return new FerryError(err.code, err.details || err.message);
  return err;
}

/** Handler outcomes: throw one of these from a subscription handler. */
class Retry extends Error {
  /** delayMs undefined: the group's backoff schedule. */
  constructor(reason = '', delayMs = undefined) {
    super(reason);
    this.name = 'Retry';
    this.reason = reason;
    this.delayMs = delayMs;
  }
}
class DeadLetter extends Error {
  constructor(reason) {
    super(reason);
    this.name = 'DeadLetter';
    this.reason = reason;
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Exponential backoff with jitter: the n-th wait is uniform in [c/2, c], c = min(max, initial*2^n).
class Backoff {
  constructor(initial = 100, max = 5000) {
    this.initial = initial;
    this.max = max;
    this.attempt = 0;
  }
  next() {
    const c = Math.min(this.max, this.initial * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 30);
    return c / 2 + Math.random() * (c / 2);
  }
  reset() {
    this.attempt = 0;
  }
}

function readFile(p) {
  return p ? fs.readFileSync(p) : null;
}

function reasonText(text) {
  let b = Buffer.from(String(text).replace(/\0/g, ' '), 'utf8');
  if (b.length <= 4096) return b.toString('utf8');
  b = b.subarray(0, 4096);
  return b.toString('utf8').replace(/\uFFFD+$/, '');
}

/**
 * One gRPC channel to a broker. Options left out come from the environment, as ferryctl's:
 * FERRY_BROKER (default 127.0.0.1:7420), FERRY_TOKEN, FERRY_TLS_CA, FERRY_TLS_CLIENT_CERT,
 * FERRY_TLS_CLIENT_KEY, FERRY_TLS_SERVER_NAME. TLS when a CA or client certificate is given.
 */
class Client {
  constructor(options = {}) {
    const env = process.env;
    this.address = options.address || env.FERRY_BROKER || '127.0.0.1:7420';
    this.token = options.token !== undefined ? options.token : env.FERRY_TOKEN || '';
    this.timeoutMs = options.timeoutMs || 30000;
    const ca = options.tlsCa || env.FERRY_TLS_CA;
    const cert = options.tlsClientCert || env.FERRY_TLS_CLIENT_CERT;
    const key = options.tlsClientKey || env.FERRY_TLS_CLIENT_KEY;
    const serverName = options.tlsServerName || env.FERRY_TLS_SERVER_NAME;
    const channelOptions = {
      'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      'grpc.keepalive_time_ms': options.keepaliveMs || 30000,
      'grpc.keepalive_timeout_ms': 10000,
      // A restarted broker is found again within ~2 s, not after gRPC's 120 s backoff cap.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
    };
    let creds;
    if (ca || cert) {
      if (!!cert !== !!key) throw new Error('a TLS client certificate needs its key (and the key its certificate)');
      creds = grpc.credentials.createSsl(readFile(ca), readFile(key), readFile(cert));
      if (serverName) channelOptions['grpc.ssl_target_name_override'] = serverName;
    } else {
      creds = grpc.credentials.createInsecure();
    }
    this.broker = new pb.Broker(this.address, creds, channelOptions);
    // The admin stub shares the broker stub's channel.
    this.adminStub = new pb.Admin(this.address, creds, { ...channelOptions, channelOverride: this.broker.getChannel() });
    this._admin = null;
  }

  metadata() {
    const md = new grpc.Metadata();
    if (this.token) md.set('authorization', 'Bearer ' + this.token);
    return md;
  }

  /** One unary call with the token and deadline; rejects with FerryError. Waits for a broker
   * that cannot be reached (waitForReady) until the deadline. */
  call(stub, method, request, timeoutMs) {
    return new Promise((resolve, reject) => {
      stub[method](request, this.metadata(),
        { deadline: Date.now() + (timeoutMs || this.timeoutMs), waitForReady: true },
        (err, resp) => (err ? reject(wrap(err)) : resolve(resp)));
    });
  }

  /** call(), retried with backoff on retryable errors for up to retryForMs (only for calls that
   * are safe to repeat). */
  async callWithRetry(stub, method, request, retryForMs = 60000) {
    const deadline = Date.now() + retryForMs;
    const backoff = new Backoff(50, 2000);
    for (;;) {
      try {
        return await this.call(stub, method, request);
      } catch (e) {
        const wait = backoff.next();
        if (!isRetryable(e) || Date.now() + wait > deadline) throw e;
        await sleep(wait);
      }
    }
  }

  publisher(settings) {
    return new Publisher(this, settings);
  }

  subscribe(topic, group, handler, settings) {
    return new Subscription(this, topic, group, handler, settings);
  }

  /** An async iterator over the messages of topic/group. Settle a message with m.ack(),
   * m.retry(reason, delayMs) or m.deadLetter(reason); one not settled is ACKed when the loop
   * asks for the next one, and released (delivered again) when the loop ends at it (break,
   * return or throw: ack() before a break if it was handled). */
  messages(topic, group, settings = {}) {
    return iterate(this, topic, group, settings);
  }

  async beginTransaction(producerGroup, { checkRef = '', timeoutMs = 0 } = {}) {
    // Not retried: after an unknown outcome a retry would begin a second transaction.
    const r = await this.call(this.broker, 'BeginTransaction',
      { producer_group: producerGroup, check_ref: checkRef, timeout_ms: String(timeoutMs) });
    return new Transaction(this, r.transaction_id, producerGroup);
  }

  onCheck(producerGroups, handler, checkerId) {
    return new Checker(this, producerGroups, handler, checkerId);
  }

  get admin() {
    if (!this._admin) this._admin = new Admin(this);
    return this._admin;
  }

  close() {
    this.adminStub.close();
    this.broker.close();
  }
}

function toProto(payload, o = {}) {
  if (o.delayMs !== undefined && o.deliverAt !== undefined) throw new Error('set delayMs or deliverAt, not both');
  if (o.delayMs !== undefined && !(o.delayMs >= 0)) throw new Error('delayMs must not be negative');
  const m = {
    key: o.key || '',
    payload: Buffer.isBuffer(payload) ? payload : Buffer.from(payload),
    headers: o.headers || {},
    dedup_id: o.dedupId || crypto.randomUUID(),
  };
  if (o.delayMs) m.delay_ms = String(Math.floor(o.delayMs));
  if (o.deliverAt) {
    const ms = o.deliverAt.getTime();
    m.deliver_at = { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
  }
  return m;
}

function approxSize(m) {
  let n = m.payload.length + m.key.length + m.dedup_id.length + 16;
  for (const [k, v] of Object.entries(m.headers)) n += k.length + v.length + 4;
  return n;
}

function result(r, m) {
  return {
    queue: r.queue, offset: r.offset, duplicate: r.duplicate, delayed: r.delayed,
    delayedId: r.delayed_id, dedupId: m.dedup_id,
  };
}

/**
 * Batches per topic (maxMessages 100, maxBytes 1 MB, maxLatencyMs 10: Pub/Sub's defaults),
 * retries retryable failures for retryForMs with the same dedup ids (generated when not given),
 * keeps order per key: keyed messages go to one of `lanes` lanes per topic by crc32(key), and a
 * lane has one batch in flight at a time (retries included). When a keyed batch fails for good,
 * its keys are paused (as Pub/Sub's ordering keys): their queued messages and later publishes
 * reject with FAILED_PRECONDITION until resumePublish(topic, key).
 */
class Publisher {
  constructor(client, s = {}) {
    this.client = client;
    this.maxMessages = Math.min(s.maxMessages || 100, 1000);
    this.maxBytes = Math.min(s.maxBytes || 1 << 20, 16 << 20);
    this.maxLatencyMs = s.maxLatencyMs || 10;
    this.maxInFlight = s.maxInFlight || 8;
    this.lanes = s.lanes || 8;
    this.retryForMs = s.retryForMs || 600000;
    this.lanesById = new Map();
    this.inFlight = 0;
    this.outstanding = 0;
    this.closed = false;
    this.idle = []; // resolvers waiting for outstanding == 0
    this.paused = new Map(); // topic + '\0' + key -> why
  }

  /** Lets key be published to topic again after a failure paused it. */
  resumePublish(topic, key) {
    this.paused.delete(topic + '\0' + key);
  }

  _pausedError(topic, key) {
    const why = this.paused.get(topic + '\0' + key);
    return new FerryError(grpc.status.FAILED_PRECONDITION, `publishing key ${JSON.stringify(key)} to ${topic} is ` +
      `paused: an earlier message of the key failed (${why && why.message}); call resumePublish`);
  }

  // Pauses the keys of a failed batch and rejects their queued messages; returns how many.
  _pause(lane, batch, error) {
    for (const p of batch) this.paused.set(lane.topic + '\0' + p.msg.key, error);
    let failed = 0;
    const keep = (items) => items.filter((p) => {
      if (!this.paused.has(lane.topic + '\0' + p.msg.key)) return true;
      p.reject(this._pausedError(lane.topic, p.msg.key));
      failed++;
      return false;
    });
    lane.pending = keep(lane.pending);
    lane.bytes = lane.pending.reduce((n, p) => n + p.size, 0);
    lane.ready = lane.ready.map(keep).filter((b) => b.length);
    return failed;
  }

  /** Resolves with {queue, offset, duplicate, delayed, delayedId, dedupId} once stored. */
  publish(topic, payload, options = {}) {
    if (this.closed) return Promise.reject(new Error('publisher is closed'));
    let msg;
    try {
      msg = toProto(payload, options);
    } catch (e) {
      return Promise.reject(e);
    }
    if (msg.key && this.paused.has(topic + '\0' + msg.key)) return Promise.reject(this._pausedError(topic, msg.key));
    const laneNo = msg.key ? (zlib.crc32 || crc32)(msg.key) % this.lanes : -1;
    const id = topic + '\0' + laneNo;
    let lane = this.lanesById.get(id);
    if (!lane) {
      lane = { topic, ordered: laneNo >= 0, pending: [], bytes: 0, ready: [], inFlight: 0, timer: null };
      this.lanesById.set(id, lane);
    }
    return new Promise((resolve, reject) => {
      // generated: the dedup id is ours, so finding it stored means our own earlier attempt.
      lane.pending.push({ msg, resolve, reject, size: approxSize(msg), generated: !options.dedupId });
      lane.bytes += lane.pending[lane.pending.length - 1].size;
      this.outstanding++;
      if (lane.pending.length >= this.maxMessages || lane.bytes >= this.maxBytes) {
        this._cut(lane);
      } else if (!lane.timer) {
        lane.timer = setTimeout(() => this._cut(lane), this.maxLatencyMs);
      }
    });
  }

  _cut(lane) {
    if (lane.timer) {
      clearTimeout(lane.timer);
      lane.timer = null;
    }
    while (lane.pending.length) {
      let n = 0;
      let size = 0;
      while (n < lane.pending.length && n < this.maxMessages &&
             (n === 0 || size + lane.pending[n].size <= this.maxBytes)) {
        size += lane.pending[n].size;
        n++;
      }
      lane.ready.push(lane.pending.splice(0, n));
      lane.bytes -= size;
    }
    this._dispatch();
  }

  _dispatch() {
    for (const lane of this.lanesById.values()) {
      while (lane.ready.length && this.inFlight < this.maxInFlight && !(lane.ordered && lane.inFlight)) {
        const batch = lane.ready.shift();
        lane.inFlight++;
        this.inFlight++;
        this._send(lane, batch);
      }
    }
  }

  async _send(lane, batch) {
    const request = { topic: lane.topic, messages: batch.map((p) => p.msg) };
    const deadline = Date.now() + this.retryForMs;
    const backoff = new Backoff(100, 10000);
    let response;
    let error;
    for (;;) {
      try {
        response = await this.client.call(this.client.broker, 'Produce', request);
        break;
      } catch (e) {
        const wait = backoff.next();
        if (!isRetryable(e) || Date.now() + wait > deadline) {
          error = e;
          break;
        }
        await sleep(wait);
      }
    }
    batch.forEach((p, i) => {
      if (error) return p.reject(error);
      const r = result(response.results[i], p.msg);
      if (p.generated) r.duplicate = false;
      return p.resolve(r);
    });
    if (error && lane.ordered) this.outstanding -= this._pause(lane, batch, error);
    lane.inFlight--;
    this.inFlight--;
    this.outstanding -= batch.length;
    if (this.outstanding === 0) this.idle.splice(0).forEach((r) => r());
    this._dispatch();
  }

  /** Sends everything queued now; resolves when all of it is resolved. */
  flush() {
    for (const lane of this.lanesById.values()) if (lane.pending.length) this._cut(lane);
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((r) => this.idle.push(r));
  }

  async close() {
    await this.flush();
    this.closed = true;
  }
}

// zlib.crc32 exists from Node 20.15/22.2; this is the same CRC-32 for older ones.
let crcTable = null;
function crc32(s) {
  if (!crcTable) {
    crcTable = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c;
    }
  }
  let c = -1;
  for (const b of Buffer.from(s)) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

function fromProto(m) {
  const ts = m.produced_at || { seconds: '0', nanos: 0 };
  return {
    topic: m.topic, queue: m.queue, offset: m.offset, key: m.key, payload: m.payload,
    headers: m.headers || {}, deliveryAttempt: m.delivery_attempt,
    producedAt: new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)),
    receipt: m.receipt,
    get id() {
      return this.headers['ferry-outbox-id'] || `${this.topic}/${this.queue}/${this.offset}`;
    },
  };
}

/**
 * Runs `handler(message)` (async) for topic/group: long polls, at most maxOutstandingMessages /
 * maxOutstandingBytes received and unsettled, at most `concurrency` handlers at once, leases
 * extended while handlers run (every leaseMs/3, up to maxLeaseExtensionMs), commits batched.
 * Resolving ACKs; throwing Retry / DeadLetter chooses; any other error is a RETRY on the
 * group's backoff with the error as the reason. Ordered groups: a queue's messages run one
 * after another; after a RETRY the rest of its batch is released.
 */
class Subscription {
  constructor(client, topic, group, handler, s = {}) {
    this.client = client;
    this.topic = topic;
    this.group = group;
    this.handler = handler;
    this.maxMessages = s.maxOutstandingMessages || 1000;
    this.maxBytes = s.maxOutstandingBytes || 100 << 20;
    this.concurrency = s.concurrency || 10;
    this.leaseMs = s.leaseMs || 30000;
    if (this.leaseMs < 1000 || this.leaseMs > 43200000) throw new Error('leaseMs must be 1000 to 43200000');
    this.maxExtensionMs = s.maxLeaseExtensionMs || 3600000;
    this.maxWaitMs = s.maxWaitMs || 5000;
    this.start = s.startPosition === 'latest' ? 'START_POSITION_LATEST' : 'START_POSITION_EARLIEST';
    this.stats = {
      received: 0, acked: 0, retried: 0, deadLettered: 0, released: 0, staleReceipts: 0,
      invalidReceipts: 0, leaseExtensions: 0, handlerErrors: 0, maxOutstandingSeen: 0,
    };
    this.error = null;
    this.inflight = new Map(); // receipt -> item
    this.bytes = 0;
    this.queue = []; // items waiting for a handler slot
    this.running = 0;
    this.chains = new Map();
    this.settles = [];
    this.stopping = false;
    this.pullCall = null;
    this.wakePull = null;
    this.commitTimer = null;
    this.committing = Promise.resolve();
    this.ordered = s.ordered;
    this.done = this._main();
    this.done.catch(() => {});
  }

  get outstanding() {
    return this.inflight.size;
  }

  async _main() {
    if (this.ordered === undefined) {
      try {
        this.ordered = await this._isOrdered();
      } catch (e) {
        console.error(`ferry: subscription ${this.topic}/${this.group} cannot start: ${e.message}`);
        this.error = e;
        this.stopping = true;
        return;
      }
    }
    this.extendTimer = setInterval(() => this._extend(), Math.max(500, Math.min(this.leaseMs / 3, 5000)));
    await this._pullLoop();
  }

  // Asks the broker (retrying while it is unreachable: guessing "unordered" would break an
  // ordered group's order). A caller without admin reads gets a warning and unordered.
  async _isOrdered() {
    try {
      const t = await this.client.callWithRetry(this.client.adminStub, 'DescribeTopic', { name: this.topic });
      if (t.topic.ordered) return true;
      const g = await this.client.callWithRetry(this.client.adminStub, 'DescribeGroup', { name: this.group });
      return g.group.ordered;
    } catch (e) {
      if (e.code === grpc.status.NOT_FOUND) return false;
      if (e.code === grpc.status.PERMISSION_DENIED || e.code === grpc.status.UNAUTHENTICATED) {
        console.warn(`ferry: cannot tell whether ${this.topic}/${this.group} is ordered (${e.message}): ` +
          'handling messages concurrently; pass ordered: true for an ordered group');
        return false;
      }
      throw e;
    }
  }

  async _pullLoop() {
    const backoff = new Backoff(100, 5000);
    while (!this.stopping) {
      if (this.inflight.size >= this.maxMessages || this.bytes >= this.maxBytes) {
        await new Promise((r) => (this.wakePull = r));
        continue;
      }
      const want = Math.min(this.maxMessages - this.inflight.size, 1000);
      let resp;
      try {
        resp = await new Promise((resolve, reject) => {
          this.pullCall = this.client.broker.Consume({
            group: this.group, topic: this.topic, max_messages: want, max_wait_ms: this.maxWaitMs,
            visibility_timeout_ms: this.leaseMs, start_position: this.start,
          }, this.client.metadata(), { deadline: Date.now() + this.client.timeoutMs + this.maxWaitMs, waitForReady: true },
          (err, r) => (err ? reject(wrap(err)) : resolve(r)));
        });
        backoff.reset();
      } catch (e) {
        if (this.stopping) return;
        if (!isRetryable(e)) {
          console.error(`ferry: consume ${this.topic}/${this.group} failed: ${e.message}; the subscription stops`);
          this.error = e;
          this.stop().catch(() => {});
          return;
        }
        const wait = backoff.next();
        console.warn(`ferry: consume ${this.topic}/${this.group} failed: ${e.message}; again in ${Math.round(wait)} ms`);
        await sleep(wait);
        continue;
      } finally {
        this.pullCall = null;
      }
      this._dispatch(resp.messages);
    }
  }

  _dispatch(messages) {
    const now = Date.now();
    for (const m of messages) {
      const item = { msg: fromProto(m), size: m.payload.length + 200, receivedAt: now, leaseUntil: now + this.leaseMs,
        chain: null, started: false, done: false };
      this.inflight.set(m.receipt, item);
      this.bytes += item.size;
      this.stats.received++;
      if (this.ordered) {
        item.chain = `${m.topic}/${m.queue}`;
        const chain = this.chains.get(item.chain);
        if (chain) {
          chain.push(item);
          continue;
        }
        this.chains.set(item.chain, []);
      }
      this.queue.push(item);
    }
    this.stats.maxOutstandingSeen = Math.max(this.stats.maxOutstandingSeen, this.inflight.size);
    this._startHandlers();
  }

  _startHandlers() {
    while (this.queue.length && this.running < this.concurrency) {
      const item = this.queue.shift();
      this.running++;
      this._handle(item).finally(() => {
        this.running--;
        if (this.running === 0 && this.onIdle) this.onIdle();
        this._startHandlers();
      });
    }
  }

  async _handle(item) {
    while (item) {
      if (this.stopping || item.done) {
        this._release(item, 'released: the subscriber stopped before handling it');
        item = this._next(item, true);
        continue;
      }
      item.started = true;
      const entry = { receipt: item.msg.receipt, outcome: 'ACK', reason: '' };
      try {
        await this.handler(item.msg);
      } catch (e) {
        if (e instanceof Retry) {
          entry.outcome = 'RETRY';
          entry.reason = reasonText(e.reason);
          if (e.delayMs !== undefined) entry.retry_delay_ms = Math.floor(e.delayMs);
        } else if (e instanceof DeadLetter) {
          entry.outcome = 'DEAD_LETTER';
          entry.reason = reasonText(e.reason || 'rejected');
        } else {
          this.stats.handlerErrors++;
          console.warn(`ferry: handler failed on ${item.msg.topic}/${item.msg.queue}/${item.msg.offset} ` +
            `(attempt ${item.msg.deliveryAttempt}): ${e && e.stack ? e.stack.split('\n')[0] : e}`);
          entry.outcome = 'RETRY';
          entry.reason = reasonText(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
        }
      }
      item.done = true;
      this._settle(item, entry);
      item = this._next(item, entry.outcome === 'RETRY');
    }
  }

  _next(item, released) {
    if (!item.chain) return null;
    let chain = this.chains.get(item.chain);
    if (!chain) return null;
    if (released) {
      for (const rest of chain) this._release(rest, 'released: an earlier message of its queue is being retried');
      chain = [];
    }
    if (!chain.length) {
      this.chains.delete(item.chain);
      return null;
    }
    return chain.shift();
  }

  _release(item, why) {
    if (item.done) return;
    item.done = true;
    this.stats.released++;
    this._settle(item, { receipt: item.msg.receipt, outcome: 'RETRY', retry_delay_ms: 0, reason: why });
  }

  _settle(item, entry) {
    this.settles.push({ item, entry });
    if (this.settles.length >= 100) this._flushCommits();
    else if (!this.commitTimer) this.commitTimer = setTimeout(() => this._flushCommits(), 10);
  }

  _flushCommits() {
    if (this.commitTimer) {
      clearTimeout(this.commitTimer);
      this.commitTimer = null;
    }
    while (this.settles.length) {
      const batch = this.settles.splice(0, 1000);
      const p = this._commit(batch);
      this.committing = Promise.all([this.committing, p]);
    }
    return this.committing;
  }

  async _commit(batch) {
    let results = null;
    try {
      // Commit is idempotent: retried for as long as a lease could still be valid.
      results = (await this.client.callWithRetry(this.client.broker, 'Commit',
        { group: this.group, entries: batch.map((b) => b.entry) }, this.leaseMs)).results;
    } catch (e) {
      console.error(`ferry: commit of ${batch.length} messages in ${this.group} failed: ${e.message}; ` +
        'they are delivered again when their leases end');
    }
    batch.forEach((b, i) => {
      if (results) this._count(b, results[i]);
      const item = this.inflight.get(b.item.msg.receipt);
      if (item) {
        this.inflight.delete(b.item.msg.receipt);
        this.bytes -= item.size;
      }
    });
    if (this.wakePull) {
      const w = this.wakePull;
      this.wakePull = null;
      w();
    }
  }

  _count(b, r) {
    const m = b.item.msg;
    switch (r.status) {
      case 'STALE_RECEIPT':
        this.stats.staleReceipts++;
        console.warn(`ferry: stale receipt for ${m.topic}/${m.queue}/${m.offset} in ${this.group}: ` +
          `its lease had ended and it was delivered again (${r.detail})`);
        break;
      case 'INVALID_RECEIPT':
      case 'TOPIC_NOT_FOUND':
        this.stats.invalidReceipts++;
        console.error(`ferry: commit refused for ${m.topic}/${m.queue}/${m.offset}: ${r.detail}`);
        break;
      case 'DEAD_LETTERED':
        this.stats.deadLettered++;
        break;
      case 'RETRY_SCHEDULED':
        if (!b.entry.reason.startsWith('released:')) this.stats.retried++;
        break;
      default:
        this.stats.acked++;
    }
  }

  async _extend() {
    const now = Date.now();
    const due = [...this.inflight.values()].filter((i) => !i.done &&
      i.leaseUntil - now < (this.leaseMs * 2) / 3 && now - i.receivedAt < this.maxExtensionMs);
    for (let s = 0; s < due.length; s += 1000) {
      const chunk = due.slice(s, s + 1000);
      try {
        const r = await this.client.call(this.client.broker, 'ExtendLease', {
          group: this.group, receipts: chunk.map((i) => i.msg.receipt), visibility_timeout_ms: this.leaseMs,
        });
        r.results.forEach((res, k) => {
          if (res.status === 'LEASE_EXTENDED') {
            chunk[k].leaseUntil = now + this.leaseMs;
            this.stats.leaseExtensions++;
          } else if (!chunk[k].done) {
            console.warn(`ferry: lease of ${chunk[k].msg.topic}/${chunk[k].msg.queue}/${chunk[k].msg.offset} ` +
              `not extended: ${res.detail}`);
          }
        });
      } catch (e) {
        console.warn(`ferry: extending ${chunk.length} leases in ${this.group} failed: ${e.message}`);
      }
    }
  }

  /** Stops pulling, releases messages not started, gives running handlers up to timeoutMs,
   * sends the commits. */
  async stop(timeoutMs = 30000) {
    if (this._stopped) return this._stopped;
    this.stopping = true;
    this._stopped = (async () => {
      if (this.pullCall) this.pullCall.cancel();
      if (this.wakePull) this.wakePull();
      for (const item of this.queue.splice(0)) this._release(item, 'released: the subscriber stopped before handling it');
      if (this.running > 0) {
        await Promise.race([new Promise((r) => (this.onIdle = r)), sleep(timeoutMs)]);
      }
      clearInterval(this.extendTimer);
      await this._flushCommits();
      await this.done.catch(() => {});
    })();
    return this._stopped;
  }
}

async function* iterate(client, topic, group, settings) {
  // One message at a time through a Subscription with concurrency 1: the handler's promise
  // resolves when the loop asks for the next message (ACK) or rejects when it leaves (release).
  const waiting = [];
  let wake = null;
  const sub = new Subscription(client, topic, group, (m) => new Promise((resolve, reject) => {
    waiting.push({ m, resolve, reject });
    if (wake) wake();
  }), { ...settings, concurrency: 1 });
  let current = null;
  try {
    for (;;) {
      while (!waiting.length) {
        if (sub.error) throw sub.error;
        await new Promise((r) => (wake = r));
        wake = null;
      }
      current = waiting.shift();
      const { resolve, reject } = current;
      Object.assign(current.m, {
        ack: () => resolve(),
        retry: (reason = '', delayMs = undefined) => reject(new Retry(reason, delayMs)),
        deadLetter: (reason) => reject(new DeadLetter(reason)),
      });
      yield current.m;
      current.resolve();
      current = null;
    }
  } finally {
    if (current) current.reject(new Retry('released: the loop over messages ended before it was done', 0));
    const stopping = sub.stop(5000);
    for (const w of waiting.splice(0)) w.reject(new Retry('released: the loop over messages ended', 0));
    await stopping;
  }
}

const DECISIONS = { commit: 'TRANSACTION_COMMIT', rollback: 'TRANSACTION_ROLLBACK', unknown: 'TRANSACTION_UNKNOWN' };

function decisionOf(answer) {
  if (answer === true) return DECISIONS.commit;
  if (answer === false) return DECISIONS.rollback;
  if (answer === null || answer === undefined) return DECISIONS.unknown;
  return DECISIONS[answer] || answer;
}

/** A PREPARED transaction at the broker: half messages invisible and ACKs held until commit. */
class Transaction {
  constructor(client, id, producerGroup) {
    this.client = client;
    this.id = id;
    this.producerGroup = producerGroup;
    this.state = null;
  }

  /** Stores half messages: [{payload, key?, headers?, dedupId?}] (retried with their dedup ids). */
  async publish(topic, messages) {
    const msgs = (Array.isArray(messages) ? messages : [messages]).map((m) => toProto(m.payload, m));
    const r = await this.client.callWithRetry(this.client.broker, 'Produce',
      { topic, messages: msgs, transaction_id: this.id });
    return r.results.map((x, i) => result(x, msgs[i]));
  }

  /** Attaches ACKs of delivered messages (messages or receipts) to this transaction. */
  async ack(group, messages) {
    const list = Array.isArray(messages) ? messages : [messages];
    const r = await this.client.callWithRetry(this.client.broker, 'Commit', {
      group, transaction_id: this.id,
      entries: list.map((m) => ({ receipt: typeof m === 'string' ? m : m.receipt, outcome: 'ACK' })),
    });
    const bad = r.results.filter((x) => x.status !== 'TRANSACTION_PENDING' && x.status !== 'ALREADY_COMMITTED');
    if (bad.length) throw new FerryError(grpc.status.FAILED_PRECONDITION, `${bad.length} ACKs not attached: ${bad[0].detail}`);
  }

  commit() {
    return this._end('TRANSACTION_COMMIT');
  }

  rollback() {
    return this._end('TRANSACTION_ROLLBACK');
  }

  async _end(decision) {
    const r = await this.client.callWithRetry(this.client.broker, 'EndTransaction', { transaction_id: this.id, decision });
    this.state = r.state;
    return r.messages;
  }
}

/**
 * Answers back-checks on the CheckTransaction stream, reconnecting with backoff. handler(check)
 * (may be async) returns true/'commit', false/'rollback' or null/'unknown'; a throw is unknown.
 */
class Checker {
  constructor(client, producerGroups, handler, checkerId) {
    this.client = client;
    this.groups = Array.isArray(producerGroups) ? producerGroups : [producerGroups];
    this.handler = handler;
    this.checkerId = checkerId || `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
    this.connects = 0;
    this.checks = 0;
    this.connected = false;
    this.stopped = false;
    this.call = null;
    this._waiters = [];
    this.done = this._run();
  }

  /** Resolves once the stream is subscribed. */
  whenConnected() {
    if (this.connected) return Promise.resolve();
    return new Promise((r) => this._waiters.push(r));
  }

  async _run() {
    const backoff = new Backoff(100, 5000);
    while (!this.stopped) {
      const err = await this._session(backoff);
      if (this.stopped) return;
      const wait = backoff.next();
      console.warn(`ferry: back-check stream ended (${err ? err.message : 'closed'}); reconnecting in ${Math.round(wait)} ms`);
      await sleep(wait);
    }
  }

  _session(backoff) {
    return new Promise((resolve) => {
      const call = this.client.broker.CheckTransaction(this.client.metadata(), { waitForReady: true });
      this.call = call;
      let ended = false;
      const end = (err) => {
        if (ended) return;
        ended = true;
        this.connected = false;
        this.call = null;
        resolve(err);
      };
      // The broker sends the headers once the subscription is registered.
      call.on('metadata', () => {
        this.connects++;
        this.connected = true;
        backoff.reset();
        this._waiters.splice(0).forEach((r) => r());
      });
      call.on('data', async (resp) => {
        if (resp.rejected) {
          console.warn(`ferry: back-check answer for ${resp.rejected.transaction_id} refused: ${resp.rejected.reason}`);
          return;
        }
        const check = resp.check;
        if (!check) return;
        let decision = 'TRANSACTION_UNKNOWN';
        try {
          decision = decisionOf(await this.handler(check));
        } catch (e) {
          console.warn(`ferry: check handler failed for ${check.transaction_id}: ${e.message}; answering UNKNOWN`);
        }
        if (ended) return;
        call.write({ answer: { transaction_id: check.transaction_id, check_id: check.check_id, decision } });
        this.checks++;
      });
      call.on('error', (e) => end(wrap(e)));
      call.on('end', () => end(null));
      call.write({ subscribe: { producer_groups: this.groups, checker_id: this.checkerId } });
    });
  }

  async stop() {
    this.stopped = true;
    if (this.call) this.call.cancel();
    await this.done;
  }
}

// -- outbox and inbox (node-postgres: a pg Client or PoolClient inside your transaction) --------

/** Inserts one ferry_outbox row in the caller's transaction; resolves to its id (the message's
 * dedup id and "ferry-outbox-id" header). Same tables as the C++ helpers (`ferry-relay migrate`). */
async function enqueue(db, topic, key, payload, headers = {}) {
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const r = key
    ? await db.query('INSERT INTO ferry_outbox (topic, key, payload, headers) VALUES ($1, $2, $3, $4::jsonb) RETURNING id::text',
      [topic, key, body, JSON.stringify(headers)])
    : await db.query('INSERT INTO ferry_outbox (topic, payload, headers) VALUES ($1, $2, $3::jsonb) RETURNING id::text',
      [topic, body, JSON.stringify(headers)]);
  return r.rows[0].id;
}

/** Runs fn(db) in the caller's transaction only if consumerGroup has not processed the message
 * (a delivered message: its outbox id; or an id string) yet, recording it there. Resolves true
 * if fn ran, false for a duplicate. */
async function processOnce(db, consumerGroup, message, fn) {
  const id = typeof message === 'string' ? message : message.id;
  const r = await db.query('INSERT INTO ferry_inbox (consumer_group, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1',
    [consumerGroup, id]);
  if (r.rowCount === 0) return false;
  await fn(db);
  return true;
}

// -- admin --------------------------------------------------------------------------------------

/** Thin helpers over the Admin service; client.call(client.adminStub, 'Method', request) for the rest. */
class Admin {
  constructor(client) {
    this.client = client;
  }
  _call(method, req) {
    return this.client.call(this.client.adminStub, method, req);
  }
  async createTopic(name, { queues = 0, retentionMs = 0, dedupWindowMs = 0, ordered = false, existOk = false } = {}) {
    try {
      return (await this._call('CreateTopic', { topic: { name, queues, retention_ms: String(retentionMs),
        dedup_window_ms: String(dedupWindowMs), ordered } })).topic;
    } catch (e) {
      if (existOk && e.code === grpc.status.ALREADY_EXISTS) return (await this._call('DescribeTopic', { name })).topic;
      throw e;
    }
  }
  async listTopics() {
    return (await this._call('ListTopics', {})).topics;
  }
  async deleteTopic(name) {
    await this._call('DeleteTopic', { name });
  }
  async createGroup(name, { topics = [], maxDeliveryAttempts = 0, backoffMs = [], ordered = false, startPosition = 'earliest' } = {}) {
    return (await this._call('CreateGroup', { topics, group: { name, max_delivery_attempts: maxDeliveryAttempts,
      backoff_ms: backoffMs.map(String), ordered,
      start_position: startPosition === 'latest' ? 'START_POSITION_LATEST' : 'START_POSITION_EARLIEST' } })).group;
  }
  lag(group, topic = '') {
    return this._call('GetGroupLag', { group, topic });
  }
  async deadLetters(group, topic = '') {
    const out = [];
    let page_token = '';
    do {
      const page = await this._call('ListDeadLetters', { group, topic, page_size: 1000, page_token });
      out.push(...page.dead_letters);
      page_token = page.next_page_token;
    } while (page_token);
    return out;
  }
  redriveDeadLetters(group, { ids = [], all = false, toTopic = '' } = {}) {
    return this._call('RedriveDeadLetters', { group, ids: ids.map(String), all, to_topic: toTopic });
  }
  async transactions({ state, producerGroup = '', limit = 100 } = {}) {
    return (await this._call('ListTransactions', { state, producer_group: producerGroup, limit })).transactions;
  }
  async resolveTransaction(transactionId, decision, reason) {
    return (await this._call('ResolveTransaction', { transaction_id: transactionId, decision: DECISIONS[decision] || decision,
      reason })).state;
  }
}

module.exports = {
  Client, Publisher, Subscription, Transaction, Checker, Admin, FerryError, Retry, DeadLetter,
  isRetryable, enqueue, processOnce, status: grpc.status, proto: pb,
};
