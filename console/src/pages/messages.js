// The message browser: any stored message by topic/queue/offset, key, dedup id (the relay's
// outbox id) or produce time, paged without a cap; reading never consumes. One message: its
// payload as JSON, text or hex, its headers, and where it is for every group.
import { useState, useEffect } from 'preact/hooks';
import { call, num } from '../api.js';
import { html, usePoll, ErrorBox } from '../ui.js';
import { fmtNum, fmtTime, preview, describePayload, hexDump } from '../format.js';

const PAGE = 50;

function toMs(local) {
  return local ? String(Date.parse(local + 'Z')) : '0';  // the inputs are UTC
}

export function Messages({ query }) {
  const topics = usePoll(() => call('ListTopics'), [], 0);
  const [f, setF] = useState({
    topic: query.get('topic') ?? '',
    queue: query.get('queue') ?? '',
    from: query.get('from') ?? '0',
    key: query.get('key') ?? '',
    dedup: query.get('dedup_id') ?? '',
    after: '',
    before: '',
  });
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value });
  const load = async (from) => {
    setBusy(true);
    try {
      const req = {
        topic: f.topic,
        from_offset: String(from),
        max_messages: PAGE,
        produced_after_unix_ms: toMs(f.after),
        produced_before_unix_ms: toMs(f.before),
      };
      if (f.queue !== '') req.queue = num(f.queue);  // empty with a key: the key's queue
      if (f.key !== '') req.key = f.key;
      if (f.dedup !== '') req.dedup_id = f.dedup;
      const r = await call('PeekMessages', req);
      setPage({ ...r, from });
      setError(null);
    } catch (err) {
      setError(err);
    }
    setBusy(false);
  };
  useEffect(() => {
    if (!f.topic && topics.data?.topics?.length) setF({ ...f, topic: topics.data.topics[0].name });
  }, [topics.data]);
  useEffect(() => {
    if (query.get('topic')) load(num(f.from));
  }, []);
  const submit = (e) => {
    e.preventDefault();
    load(num(f.from));
  };
  const filtered = f.key !== '' || f.dedup !== '' || f.after || f.before;
  const more = page && num(page.next_offset) < num(page.end_offset);
  return html`<section>
    <h2>Messages <small class="muted">reading never consumes</small></h2>
    <form class="panel" id="browse" onSubmit=${submit}>
      <div class="row">
        <label class="field"><span>Topic</span><select name="topic" value=${f.topic} onChange=${set('topic')}>
          ${(topics.data?.topics ?? []).map((t) => html`<option value=${t.name}>${t.name}</option>`)}</select></label>
        <label class="field"><span>Queue</span><input name="queue" type="number" min="0" placeholder="the key's (or 0)" value=${f.queue} onInput=${set('queue')} /></label>
        <label class="field"><span>From offset</span><input name="from" type="number" min="0" value=${f.from} onInput=${set('from')} /></label>
      </div>
      <div class="row">
        <label class="field"><span>Key</span><input name="key" value=${f.key} onInput=${set('key')} /></label>
        <label class="field"><span>Dedup id / outbox id</span><input name="dedup_id" value=${f.dedup} onInput=${set('dedup')} /></label>
        <label class="field"><span>Produced after (UTC)</span><input name="after" type="datetime-local" step="1" value=${f.after} onInput=${set('after')} /></label>
        <label class="field"><span>Produced before (UTC)</span><input name="before" type="datetime-local" step="1" value=${f.before} onInput=${set('before')} /></label>
      </div>
      <button class="primary" type="submit" disabled=${!f.topic || busy}>Show messages</button>
    </form>
    <${ErrorBox} error=${error} />
    ${page &&
    html`<div>
      <p class="muted" id="page-info">Queue ${page.queue} of ${page.queues}: stored offsets ${fmtNum(page.first_offset)} to
        ${fmtNum(num(page.end_offset) - 1)}. ${filtered ? `Searched ${fmtNum(page.from)} to ${fmtNum(num(page.next_offset) - 1)}: ` : ''}
        ${page.messages.length} shown.</p>
      <table class="grid" id="messages">
        <thead><tr><th>Offset</th><th>Key</th><th>Produced</th><th>Size</th><th>Payload</th></tr></thead>
        <tbody>${page.messages.map(
          (m) => html`<tr>
            <td><a href=${`#/messages/${encodeURIComponent(m.topic)}/${m.queue}/${m.offset}`}>${m.offset}</a></td>
            <td>${m.key}</td><td>${fmtTime(m.produced_at_unix_ms)}</td>
            <td>${describePayload(m.payload).bytes.length}</td><td class="payload-preview">${preview(m.payload)}</td></tr>`,
        )}</tbody>
      </table>
      ${more && html`<button id="next-page" disabled=${busy} onClick=${() => load(num(page.next_offset))}>
        ${filtered ? 'Search further' : 'Next page'} (from offset ${fmtNum(page.next_offset)})</button>`}
    </div>`}
  </section>`;
}

const STATE_TEXT = {
  MESSAGE_PENDING: 'not yet delivered',
  MESSAGE_IN_FLIGHT: 'in flight',
  MESSAGE_RETRYING: 'retrying',
  MESSAGE_REDRIVEN: 'redriven',
  MESSAGE_IN_TRANSACTION: 'acked in an undecided transaction',
  MESSAGE_ACKED: 'acked',
  MESSAGE_DEAD_LETTERED: 'dead-lettered',
};

export function MessagePage({ topic, queue, offset }) {
  const { data, error } = usePoll(
    () => call('GetMessage', { topic, queue: num(queue), offset: String(offset) }),
    [topic, queue, offset],
    5000,
  );
  const [view, setView] = useState(null);
  if (!data) return html`<h2>Message ${topic} ${queue}:${offset}</h2><${ErrorBox} error=${error} />`;
  const m = data.message;
  const p = describePayload(m.payload);
  const shown = view ?? p.kind;
  const body = shown === 'hex' || p.kind === 'binary' ? hexDump(p.bytes) : p.text;
  return html`<section>
    <h2>Message <a href=${'#/topics/' + encodeURIComponent(topic)}>${topic}</a> queue ${queue} offset ${offset}</h2>
    <dl class="facts">
      <dt>Key</dt><dd>${m.key || '—'}</dd>
      <dt>Dedup id</dt><dd>${m.dedup_id || '—'}</dd>
      <dt>Produced</dt><dd>${fmtTime(m.produced_at_unix_ms)}</dd>
      <dt>Size</dt><dd>${p.bytes.length} bytes (${p.kind})</dd>
    </dl>
    <h3>Where it is now</h3>
    <table class="grid" id="whereabouts">
      <thead><tr><th>Group</th><th>State</th><th>Attempt</th><th>Deadline</th><th>Dead-letter reason</th></tr></thead>
      <tbody>${(data.groups ?? []).map(
        (g) => html`<tr><td><a href=${'#/groups/' + encodeURIComponent(g.group)}>${g.group}</a></td>
          <td class=${'state ' + g.state}>${STATE_TEXT[g.state] ?? g.state}</td>
          <td>${g.attempt || ''}</td><td>${num(g.deadline_unix_ms) ? fmtTime(g.deadline_unix_ms) : ''}</td>
          <td>${g.dead_letter_reason}</td></tr>`,
      )}
      ${(data.groups ?? []).length === 0 && html`<tr><td colspan="5" class="muted">No group reads this queue.</td></tr>`}</tbody>
    </table>
    <h3>Headers</h3>
    <table class="grid" id="headers"><tbody>${Object.entries(m.headers ?? {}).map(
      ([k, v]) => html`<tr><th>${k}</th><td>${v}</td></tr>`,
    )}</tbody></table>
    <h3>Payload ${p.kind !== 'binary' &&
      html`<span class="ranges"><button class=${shown !== 'hex' ? 'active' : ''} onClick=${() => setView(p.kind)}>${p.kind}</button>
        <button class=${shown === 'hex' ? 'active' : ''} onClick=${() => setView('hex')}>hex</button></span>`}</h3>
    <pre id="payload">${body}</pre>
  </section>`;
}

