// Groups: list and create; one group: lag per queue, history charts, policy, reset with a
// preview of what it redelivers or skips, and its dead letters.
import { useState } from 'preact/hooks';
import { call, num } from '../api.js';
import { html, usePoll, ErrorBox, Notice, Chart, Confirm, Field } from '../ui.js';
import { fmtNum, fmtAge, fmtTime } from '../format.js';
import { byTopic, values, rates, RANGES } from '../history.js';

export function Groups({ perms }) {
  const { data, error, reload } = usePoll(() => call('ListGroups'), [], 5000);
  const [f, setF] = useState({ name: '', attempts: '16', ordered: false, latest: false, topics: '' });
  const [status, setStatus] = useState({});
  const create = async (e) => {
    e.preventDefault();
    try {
      await call('CreateGroup', {
        group: {
          name: f.name,
          max_delivery_attempts: num(f.attempts),
          ordered: f.ordered,
          start_position: f.latest ? 'START_POSITION_LATEST' : 'START_POSITION_EARLIEST',
        },
        topics: f.topics.split(',').map((t) => t.trim()).filter(Boolean),
      });
      setStatus({ notice: `Group ${f.name} created.` });
      setF({ ...f, name: '' });
      reload();
    } catch (err) {
      setStatus({ error: err });
    }
  };
  return html`<section>
    <h2>Consumer groups</h2>
    <${ErrorBox} error=${error} />
    <table class="grid" id="groups">
      <thead><tr><th>Name</th><th>Topics</th><th>Max attempts</th><th>Ordered</th><th>Starts at</th><th>Created</th></tr></thead>
      <tbody>${(data?.groups ?? []).map(
        (g) => html`<tr><td><a href=${'#/groups/' + encodeURIComponent(g.group.name)}>${g.group.name}</a></td>
          <td>${(g.topics ?? []).join(', ')}</td><td>${g.group.max_delivery_attempts}</td>
          <td>${g.group.ordered ? 'yes' : 'no'}</td>
          <td>${g.group.start_position === 'START_POSITION_LATEST' ? 'latest' : 'earliest'}</td>
          <td>${fmtTime(g.created_at_unix_ms)}</td></tr>`,
      )}</tbody>
    </table>
    ${perms.canChangeAnything &&
    html`<form class="panel" id="create-group" onSubmit=${create}>
      <h3>Create a group</h3>
      <div class="row">
        <${Field} label="Name"><input name="name" value=${f.name} onInput=${(e) => setF({ ...f, name: e.target.value })} required /></${Field}>
        <${Field} label="Max delivery attempts"><input name="attempts" type="number" min="1" max="1000" value=${f.attempts} onInput=${(e) => setF({ ...f, attempts: e.target.value })} /></${Field}>
        <${Field} label="Topics" hint="comma-separated: positions fixed now"><input name="topics" value=${f.topics} onInput=${(e) => setF({ ...f, topics: e.target.value })} /></${Field}>
      </div>
      <label><input type="checkbox" checked=${f.ordered} onChange=${(e) => setF({ ...f, ordered: e.target.checked })} /> ordered (one consumer per queue, in offset order)</label>
      <label><input type="checkbox" checked=${f.latest} onChange=${(e) => setF({ ...f, latest: e.target.checked })} /> start at the latest message (skip what is stored)</label>
      <${ErrorBox} error=${status.error} /><${Notice} notice=${status.notice} />
      <button class="primary" type="submit">Create group</button>
    </form>`}
  </section>`;
}

function GroupHistory({ name }) {
  const [range, setRange] = useState(24 * 3600e3);
  const { data, error } = usePoll(
    () => call('GetHistory', { group: name, since_unix_ms: String(Date.now() - range) }),
    [name, range],
    60000,
  );
  const topics = [...byTopic(data?.points).entries()];
  const series = (f) => topics.map(([t, ps]) => ({ label: t, points: f(ps) }));
  return html`<div class="panel" id="group-history">
    <h3>History <span class="ranges">${RANGES.map(
      ([label, ms]) => html`<button class=${ms === range ? 'active' : ''} onClick=${() => setRange(ms)}>${label}</button>`,
    )}</span></h3>
    <${ErrorBox} error=${error} />
    <div class="charts">
      <${Chart} title="Backlog (not yet delivered)" series=${series((ps) => values(ps, 'backlog'))} />
      <${Chart} title="Unsettled (in flight + retrying)" series=${series((ps) => values(ps, 'unsettled'))} />
      <${Chart} title="Consume rate (committed/s)" series=${series((ps) => rates(ps, 'position'))} />
      <${Chart} title="Oldest unacked (seconds)" series=${series((ps) => values(ps, 'oldest_unacked_ms', 1000))} />
    </div>
  </div>`;
}

function Policy({ group, onSaved }) {
  const [f, setF] = useState({
    attempts: String(group.max_delivery_attempts),
    backoff: (group.backoff_ms ?? []).map((v) => num(v) / 1000).join(' '),
    ordered: group.ordered,
  });
  const [status, setStatus] = useState({});
  const save = async (e) => {
    e.preventDefault();
    try {
      const backoff = f.backoff.split(/[\s,]+/).filter(Boolean).map((s) => String(Math.round(num(s) * 1000)));
      await call('UpdateGroup', {
        name: group.name,
        max_delivery_attempts: num(f.attempts),
        ordered: f.ordered,
        backoff_ms: backoff,
        set_backoff: true,
      });
      setStatus({ notice: 'Saved.' });
      onSaved();
    } catch (err) {
      setStatus({ error: err });
    }
  };
  return html`<form class="panel" id="group-policy" onSubmit=${save}>
    <h3>Delivery policy</h3>
    <div class="row">
      <${Field} label="Max delivery attempts"><input name="attempts" type="number" min="1" max="1000" value=${f.attempts} onInput=${(e) => setF({ ...f, attempts: e.target.value })} /></${Field}>
      <${Field} label="Backoff (seconds per attempt)" hint="empty: 10s 30s 1m 2m … 2h"><input name="backoff" value=${f.backoff} onInput=${(e) => setF({ ...f, backoff: e.target.value })} /></${Field}>
    </div>
    <label><input type="checkbox" checked=${f.ordered} onChange=${(e) => setF({ ...f, ordered: e.target.checked })} /> ordered</label>
    <${ErrorBox} error=${status.error} /><${Notice} notice=${status.notice} />
    <button class="primary" type="submit">Save policy</button>
  </form>`;
}

function resetBody(name, topic, f, dryRun) {
  const body = { group: name, topic, dry_run: dryRun };
  if (f.to === 'earliest') body.position = 'START_POSITION_EARLIEST';
  else if (f.to === 'latest') body.position = 'START_POSITION_LATEST';
  else if (f.to === 'time') body.timestamp_ms = String(Date.parse(f.time + 'Z'));  // the field is UTC
  else {
    body.offsets = {
      offsets: f.offsets.split(/[\s,]+/).filter(Boolean).map((p) => {
        const [queue, offset] = p.split(':');
        return { queue: num(queue), offset: String(num(offset)) };
      }),
    };
  }
  return body;
}

function Reset({ name, topics, onDone }) {
  const [f, setF] = useState({ topic: topics[0] ?? '', to: 'earliest', time: '', offsets: '' });
  const [preview, setPreview] = useState(null);
  const [status, setStatus] = useState({});
  const ask = async (e) => {
    e.preventDefault();
    try {
      setStatus({});
      setPreview(await call('ResetGroup', resetBody(name, f.topic, f, true)));
    } catch (err) {
      setStatus({ error: err });
    }
  };
  const moves = (preview?.positions ?? []).map((p, i) => {
    const before = num(preview.previous?.[i]?.offset);
    const after = num(p.offset);
    return { queue: p.queue, before, after, redeliver: Math.max(0, before - after), skip: Math.max(0, after - before) };
  });
  return html`<form class="panel" id="group-reset" onSubmit=${ask}>
    <h3>Reset position</h3>
    <div class="row">
      <${Field} label="Topic"><select name="topic" value=${f.topic} onChange=${(e) => setF({ ...f, topic: e.target.value })}>
        ${topics.map((t) => html`<option value=${t}>${t}</option>`)}</select></${Field}>
      <${Field} label="To"><select name="to" value=${f.to} onChange=${(e) => setF({ ...f, to: e.target.value })}>
        <option value="earliest">earliest</option><option value="latest">latest</option>
        <option value="time">a time</option><option value="offsets">offsets</option></select></${Field}>
      ${f.to === 'time' && html`<${Field} label="Time (UTC)"><input name="time" type="datetime-local" step="1" value=${f.time} onInput=${(e) => setF({ ...f, time: e.target.value })} /></${Field}>`}
      ${f.to === 'offsets' && html`<${Field} label="Offsets" hint="queue:offset, e.g. 0:10 1:7"><input name="offsets" value=${f.offsets} onInput=${(e) => setF({ ...f, offsets: e.target.value })} /></${Field}>`}
    </div>
    <${ErrorBox} error=${status.error} /><${Notice} notice=${status.notice} />
    <button type="submit" disabled=${!f.topic}>Preview reset…</button>
    ${preview &&
    html`<${Confirm} title=${`Reset ${name} on ${f.topic}`} confirmLabel="Reset position" danger
      onConfirm=${async () => {
        await call('ResetGroup', resetBody(name, f.topic, f, false));
        setStatus({ notice: 'Position reset.' });
        onDone();
      }} onClose=${() => setPreview(null)}>
      <p>Leased and retrying messages are released. Each queue moves:</p>
      <table class="grid" id="reset-preview"><thead><tr><th>Queue</th><th>From</th><th>To</th><th>Effect</th></tr></thead>
        <tbody>${moves.map(
          (m) => html`<tr><td>${m.queue}</td><td>${fmtNum(m.before)}</td><td>${fmtNum(m.after)}</td>
            <td>${m.redeliver ? `redelivers ${fmtNum(m.redeliver)}` : m.skip ? `skips ${fmtNum(m.skip)}` : 'no change'}</td></tr>`,
        )}</tbody></table>
      <p id="reset-summary">${`${fmtNum(moves.reduce((a, m) => a + m.redeliver, 0))} messages delivered again, ${fmtNum(moves.reduce((a, m) => a + m.skip, 0))} skipped.`}</p>
    </${Confirm}>`}
  </form>`;
}

export function GroupPage({ name, perms }) {
  const group = usePoll(() => call('DescribeGroup', { name }), [name], 0);
  const lag = usePoll(() => call('GetGroupLag', { group: name }), [name], 3000);
  const [confirm, setConfirm] = useState(false);
  const [deleted, setDeleted] = useState(false);
  if (deleted) return html`<${Notice} notice=${`Group ${name} deleted.`} /><a href="#/groups">Groups</a>`;
  if (!group.data) return html`<h2>Group ${name}</h2><${ErrorBox} error=${group.error} />`;
  const admin = perms.can('admin', 'group', name);
  const qs = lag.data?.queues ?? [];
  const dead = qs.reduce((a, q) => a + num(q.dead_letters), 0);
  return html`<section>
    <h2>Group ${name}</h2>
    <p>${group.data.group.ordered ? 'ordered · ' : ''}max ${group.data.group.max_delivery_attempts} attempts ·
      created ${fmtTime(group.data.created_at_unix_ms)} ·
      <a href=${'#/groups/' + encodeURIComponent(name) + '/dead-letters'}>${fmtNum(dead)} dead letters</a></p>
    <${ErrorBox} error=${lag.error} />
    <table class="grid" id="lag">
      <thead><tr><th>Topic</th><th>Queue</th><th>End</th><th>Committed</th><th>Delivered</th><th>Backlog</th>
        <th>Unsettled</th><th>In flight</th><th>Retrying</th><th>Dead letters</th><th>Oldest unacked</th></tr></thead>
      <tbody>${qs.map(
        (q) => html`<tr><td>${q.topic}</td><td>${q.queue}</td><td>${fmtNum(q.end_offset)}</td>
          <td>${fmtNum(q.committed_offset)}</td><td>${fmtNum(q.delivered_offset)}</td><td>${fmtNum(q.backlog)}</td>
          <td>${fmtNum(q.unsettled)}</td><td>${fmtNum(q.in_flight)}</td><td>${fmtNum(q.retrying)}</td>
          <td>${fmtNum(q.dead_letters)}</td><td>${fmtAge(q.oldest_unacked_age_ms)}</td></tr>`,
      )}</tbody>
    </table>
    <${GroupHistory} name=${name} />
    ${admin && html`<${Policy} group=${group.data.group} onSaved=${group.reload} />`}
    ${admin && html`<${Reset} name=${name} topics=${group.data.topics ?? []} onDone=${lag.reload} />`}
    ${admin &&
    html`<div class="panel danger-zone"><h3>Delete</h3>
      <p>Deletes the group's positions, leases, retries and dead letters.</p>
      <button class="danger" onClick=${() => setConfirm(true)}>Delete group…</button></div>`}
    ${confirm &&
    html`<${Confirm} title=${'Delete group ' + name} confirmLabel="Delete group" danger requireText=${name}
      onConfirm=${async () => {
        await call('DeleteGroup', { name });
        setDeleted(true);
      }} onClose=${() => setConfirm(false)}>
      <p>Its ${fmtNum(dead)} dead letters go with it; receipts still out become invalid.</p>
    </${Confirm}>`}
  </section>`;
}
