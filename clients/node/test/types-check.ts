// Compiled by test.sh with tsc --strict (not run): the README's example and the main calls
// type-check against index.d.ts.
import { Client, DeadLetter, FerryError, Message, Retry, enqueue, processOnce, status } from '..';

async function main(): Promise<void> {
  const client = new Client();
  const pub = client.publisher();
  const r = await pub.publish('orders', 'hello', { key: 'order-1', headers: { type: 'created' } });
  const offset: string = r.offset;
  await pub.close();
  const sub = client.subscribe('orders', 'billing', async (m: Message) => {
    if (m.payload.length === 0) throw new DeadLetter('empty');
    if (m.deliveryAttempt < 2) throw new Retry('later', 1000);
  }, { maxOutstandingMessages: 100, concurrency: 4 });
  await sub.stop();
  for await (const m of client.messages('orders', 'audit')) {
    console.log(m.id, offset);
    m.ack();
    break;
  }
  const txn = await client.beginTransaction('shop', { checkRef: 'order-1' });
  await txn.publish('orders', { payload: 'paid', key: 'order-1' });
  await txn.commit();
  const checker = client.onCheck('shop', async (check) => check.check_ref === 'order-1');
  await checker.stop();
  const db = { query: async (_t: string, _v?: unknown[]) => ({ rows: [{ id: 'x' }], rowCount: 1 }) };
  await enqueue(db, 'orders', 'order-1', 'payload');
  await processOnce(db, 'cart', 'id-1', async (tx) => tx.query('SELECT 1'));
  try {
    await client.admin.createTopic('orders', { queues: 4, existOk: true });
  } catch (e) {
    if (e instanceof FerryError && e.code === status.PERMISSION_DENIED) console.log(e.details);
  }
  client.close();
}
void main;
