// Topics: list and create; one topic: queues, history, settings, test message, delete.
import { useState } from 'preact/hooks';
import { call, produce, num, textToB64 } from '../api.js';
import { html, usePoll, ErrorBox, Notice, Chart, Confirm, Field } from '../ui.js';
import { fmtNum, fmtTime, fmtAge, parseHeaders } from '../format.js';
import { byTopic, values, rates, RANGES } from '../history.js';

const DAY = 24 * 3600e3;

export function Topics({ perms }) {
  const { data, error, reload } = usePoll(() => call('ListTopics'), [], 5000);
  const [form, setForm] = useState({ name: '', queues: '4', retention_h: '168', dedup_h: '24' });
  const [status, setStatus] = useState({});
  const create = async (e) => {
    e.preventDefault();
    try {
      await call('CreateTopic', {
        topic: {
          name: form.name,
          queues: num(form.queues),
          retention_ms: String(Math.round(num(form.retention_h) * 3600e3)),
          dedup_window_ms: String(Math.round(num(form.dedup_h) * 3600e3)),
        },
      });
      setStatus({ notice: `Topic ${form.name} created.` });
      setForm({ ...form, name: '' });
      reload();
    } catch (err) {
      setStatus({ error: err });
    }
  };
  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  return html`<section>
    <h2>Topics</h2>
    <${ErrorBox} error=${error} />
    <table class="grid" id="topics">
      <thead><tr><th>Name</th><th>Queues</th><th>Retention</th><th>Dedup window</th></tr></thead>
      <tbody>${(data?.topics ?? []).map(
        (t) => html`<tr><td><a href=${'#/topics/' + encodeURIComponent(t.name)}>${t.name}</a></td>
          <td>${t.queues}</td><td>${fmtAge(t.retention_ms)}</td><td>${fmtAge(t.dedup_window_ms)}</td></tr>`,
      )}</tbody>
    </table>
    ${perms.canChangeAnything &&
    html`<form class="panel" id="create-topic" onSubmit=${create}>
      <h3>Create a topic</h3>
      <div class="row">
        <${Field} label="Name"><input name="name" value=${form.name} onInput=${set('name')} required /></${Field}>
        <${Field} label="Queues" hint="1 to 256; fixed once created"><input name="queues" type="number" min="1" max="256" value=${form.queues} onInput=${set('queues')} /></${Field}>
        <${Field} label="Retention (hours)"><input name="retention" type="number" min="0" step="any" value=${form.retention_h} onInput=${set('retention_h')} /></${Field}>
        <${Field} label="Dedup window (hours)"><input name="dedup" type="number" min="0" step="any" value=${form.dedup_h} onInput=${set('dedup_h')} /></${Field}>
      </div>
      <${ErrorBox} error=${status.error} /><${Notice} notice=${status.notice} />
      <button class="primary" type="submit">Create topic</button>
    </form>`}
  </section>`;
}

function TopicHistory({ name }) {
  const [range, setRange] = useState(DAY);
  const { data, error } = usePoll(
    () => call('GetHistory', { topic: name, since_unix_ms: String(Date.now() - range) }),
    [name, range],
    60000,
  );
  const points = byTopic(data?.points).get(name) ?? [];
  return html`<div class="panel">
    <h3>History <span class="ranges">${RANGES.map(
      ([label, ms]) => html`<button class=${ms === range ? 'active' : ''} onClick=${() => setRange(ms)}>${label}</button>`,
    )}</span></h3>
    <${ErrorBox} error=${error} />
    <div class="charts">
      <${Chart} title="Produce rate (messages/s)" series=${[{ label: 'produced/s', points: rates(points, 'end_offset') }]} />
      <${Chart} title="Delayed messages waiting" series=${[{ label: 'delayed', points: values(points, 'delayed') }]} />
    </div>
  </div>`;
}

function ProduceForm({ name }) {
  const [f, setF] = useState({ key: '', headers: '', payload: '', delay: '', dedup: '' });
  const [status, setStatus] = useState({});
  const set = (k) => (e) => setF({ ...f, [k]: e.target.value });
  const send = async (e) => {
    e.preventDefault();
    try {
      const m = { key: f.key, payload: textToB64(f.payload), headers: parseHeaders(f.headers), dedup_id: f.dedup };
      if (f.delay) m.delay_ms = String(Math.round(num(f.delay) * 1000));
      const r = await produce({ topic: name, messages: [m] });
      const res = r.results[0];
      setStatus({
        notice: num(res.delayed_id)
          ? `Stored as delayed message ${res.delayed_id}.`
          : `Stored at queue ${res.queue} offset ${res.offset}${res.duplicate ? ' (duplicate: stored before)' : ''}.`,
      });
    } catch (err) {
      setStatus({ error: err });
    }
  };
  return html`<form class="panel" id="produce" onSubmit=${send}>
    <h3>Produce a test message</h3>
    <div class="row">
      <${Field} label="Key"><input name="key" value=${f.key} onInput=${set('key')} /></${Field}>
      <${Field} label="Dedup id"><input name="dedup_id" value=${f.dedup} onInput=${set('dedup')} /></${Field}>
      <${Field} label="Delay (seconds)"><input name="delay" type="number" min="0" step="any" value=${f.delay} onInput=${set('delay')} /></${Field}>
    </div>
    <${Field} label="Headers" hint="one per line: name: value"><textarea name="headers" rows="2" value=${f.headers} onInput=${set('headers')} /></${Field}>
    <${Field} label="Payload (UTF-8)"><textarea name="payload" rows="4" value=${f.payload} onInput=${set('payload')} /></${Field}>
    <${ErrorBox} error=${status.error} /><${Notice} notice=${status.notice} />
    <button class="primary" type="submit">Produce</button>
  </form>`;
}

function Settings({ topic, onSaved }) {
  const [f, setF] = useState({
    retention_h: String(num(topic.retention_ms) / 3600e3),
    dedup_h: String(num(topic.dedup_window_ms) / 3600e3),
  });
  const [status, setStatus] = useState({});
  const save = async (e) => {
    e.preventDefault();
    try {
      await call('UpdateTopic', {
        name: topic.name,
        retention_ms: String(Math.round(num(f.retention_h) * 3600e3)),
        dedup_window_ms: String(Math.round(num(f.dedup_h) * 3600e3)),
      });
      setStatus({ notice: 'Saved.' });
      onSaved();
    } catch (err) {
      setStatus({ error: err });
    }
  };
  return html`<form class="panel" id="topic-settings" onSubmit=${save}>
    <h3>Settings</h3>
    <div class="row">
      <${Field} label="Retention (hours)"><input name="retention" type="number" min="0.001" step="any" value=${f.retention_h} onInput=${(e) => setF({ ...f, retention_h: e.target.value })} /></${Field}>
      <${Field} label="Dedup window (hours)"><input name="dedup" type="number" min="0.001" step="any" value=${f.dedup_h} onInput=${(e) => setF({ ...f, dedup_h: e.target.value })} /></${Field}>
    </div>
    <${ErrorBox} error=${status.error} /><${Notice} notice=${status.notice} />
    <button class="primary" type="submit">Save settings</button>
  </form>`;
}

export function TopicPage({ name, perms }) {
  const { data, error, reload } = usePoll(() => call('DescribeTopic', { name }), [name], 5000);
  const [confirm, setConfirm] = useState(false);
  const [deleted, setDeleted] = useState(false);
  if (deleted) return html`<${Notice} notice=${`Topic ${name} deleted.`} /><a href="#/topics">Topics</a>`;
  if (!data) return html`<h2>Topic ${name}</h2><${ErrorBox} error=${error} />`;
  const admin = perms.can('admin', 'topic', name);
  return html`<section>
    <h2>Topic ${name}</h2>
    <${ErrorBox} error=${error} />
    <p>${data.topic.queues} queues · retention ${fmtAge(data.topic.retention_ms)} · dedup window
      ${fmtAge(data.topic.dedup_window_ms)} · created ${fmtTime(data.created_at_unix_ms)} ·
      ${fmtNum(data.delayed_messages)} delayed ·
      <a href=${'#/messages?topic=' + encodeURIComponent(name)}>browse messages</a></p>
    <table class="grid" id="queues">
      <thead><tr><th>Queue</th><th>First offset</th><th>End offset</th><th>Stored</th></tr></thead>
      <tbody>${data.queues.map(
        (q) => html`<tr><td>${q.queue}</td><td>${fmtNum(q.first_offset)}</td><td>${fmtNum(q.end_offset)}</td>
          <td><a href=${`#/messages?topic=${encodeURIComponent(name)}&queue=${q.queue}&from=${q.first_offset}`}>${fmtNum(q.message_count)}</a></td></tr>`,
      )}</tbody>
    </table>
    <${TopicHistory} name=${name} />
    ${perms.can('produce', 'topic', name) && html`<${ProduceForm} name=${name} />`}
    ${admin && html`<${Settings} topic=${data.topic} onSaved=${reload} />`}
    ${admin &&
    html`<div class="panel danger-zone"><h3>Delete</h3>
      <p>Deletes the topic, its messages and every group's progress on it.</p>
      <button class="danger" onClick=${() => setConfirm(true)}>Delete topic…</button></div>`}
    ${confirm &&
    html`<${Confirm} title=${'Delete topic ' + name} confirmLabel="Delete topic" danger requireText=${name}
      onConfirm=${async () => {
        await call('DeleteTopic', { name });
        setDeleted(true);
      }} onClose=${() => setConfirm(false)}>
      <p>${fmtNum(data.queues.reduce((a, q) => a + num(q.message_count), 0))} stored messages and
        ${fmtNum(data.delayed_messages)} delayed ones will be gone. This cannot be undone.</p>
    </${Confirm}>`}
  </section>`;
}
