// Publish and subscribe rates of the Node client against $FERRY_BROKER.
//   clients/node/bench.sh [MESSAGES] [PAYLOAD_BYTES]   (scripts/client-test.sh node --bench starts a stack)
'use strict';
const crypto = require('crypto');
const { Client } = require('.');

async function main() {
  const n = Number(process.argv[2] || 100000);
  const size = Number(process.argv[3] || 100);
  const client = new Client();
  const topic = 'bench.node.' + crypto.randomBytes(4).toString('hex');
  await client.admin.createTopic(topic, { queues: 4 });
  const payload = Buffer.alloc(size, 'x');
  let start = process.hrtime.bigint();
  const pub = client.publisher();
  const all = [];
  for (let i = 0; i < n; i++) all.push(pub.publish(topic, payload, { key: `k${i % 64}` }));
  await Promise.all(all);
  const publish = Number(process.hrtime.bigint() - start) / 1e9;

  start = process.hrtime.bigint();
  let count = 0;
  const sub = client.subscribe(topic, 'bench', async () => { count++; }, { maxWaitMs: 200, concurrency: 100 });
  while (sub.stats.acked < n) await new Promise((r) => setTimeout(r, 5));
  const subscribe = Number(process.hrtime.bigint() - start) / 1e9;
  await sub.stop();
  client.close();
  console.log(`node: publish ${n} x ${size} B: ${Math.round(n / publish)} msg/s; ` +
    `subscribe (ack each): ${Math.round(n / subscribe)} msg/s (${count} handled)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
