// Overview: topics, groups, brokers, checkers and the database, refreshed every 3 s. Rates are
// the change of end offsets (produce) and committed positions (consume) between refreshes.
import { useRef } from 'preact/hooks';
import { call, num } from '../api.js';
import { html, usePoll, ErrorBox } from '../ui.js';
import { fmtNum, fmtRate, fmtAge, fmtBytes, fmtTime } from '../format.js';

export const REFRESH_MS = 3000;

async function load() {
  const [topics, groups, cluster] = await Promise.all([
    call('ListTopics'),
    call('ListGroups'),
    call('GetClusterStatus').catch((error) => ({ error })),
  ]);
  const described = await Promise.all(
    (topics.topics ?? []).map((t) =>
      call('DescribeTopic', { name: t.name }).catch((error) => ({ topic: t, error })),
    ),
  );
  const lags = await Promise.all(
    (groups.groups ?? []).map((g) =>
      call('GetGroupLag', { group: g.group.name })
        .then((lag) => ({ ...lag, summary: g }))
        .catch((error) => ({ group: g.group.name, summary: g, queues: [], error })),
    ),
  );
  return { at: Date.now(), described, lags, cluster };
}

const sum = (xs, f) => xs.reduce((a, x) => a + num(f(x)), 0);

function rate(prev, now, key, value) {
  if (!prev || !prev.values.has(key)) return null;
  const dt = (now.at - prev.at) / 1000;
  return dt > 0 ? Math.max(0, (value - prev.values.get(key)) / dt) : null;
}

export function Overview() {
  const { data, error } = usePoll(load, [], REFRESH_MS);
  const prev = useRef(null);
  const last = useRef(null);
  if (!data) return html`<${ErrorBox} error=${error} /><p>Loading…</p>`;
  if (last.current !== data) {  // a new snapshot: the one before becomes the rate's base
    prev.current = last.current;
    last.current = data;
    data.values = new Map();
    for (const d of data.described) {
      if (!d.error) data.values.set('t:' + d.topic.name, sum(d.queues ?? [], (q) => q.end_offset));
    }
    for (const l of data.lags) data.values.set('g:' + l.summary.group.name, sum(l.queues ?? [], (q) => q.committed_offset));
  }
  const base = prev.current;
  const c = data.cluster;
  return html`<section>
    <h2>Overview <small class="muted">live, every ${REFRESH_MS / 1000} s</small></h2>
    <${ErrorBox} error=${error} />
    <h3>Topics</h3>
    <table class="grid" id="overview-topics">
      <thead><tr><th>Topic</th><th>Queues</th><th>End offsets (sum)</th><th>Stored</th>
        <th>Delayed</th><th>Produce rate</th></tr></thead>
      <tbody>
        ${data.described.map((d) =>
          d.error
            ? html`<tr><td>${d.topic.name}</td><td colspan="5" class="muted">${d.error.message}</td></tr>`
            : html`<tr>
                <td><a href=${'#/topics/' + encodeURIComponent(d.topic.name)}>${d.topic.name}</a></td>
                <td>${d.queues.length}</td>
                <td>${fmtNum(data.values.get('t:' + d.topic.name))}</td>
                <td>${fmtNum(sum(d.queues, (q) => q.message_count))}</td>
                <td>${fmtNum(d.delayed_messages)}</td>
                <td>${fmtRate(rate(base, data, 't:' + d.topic.name, data.values.get('t:' + d.topic.name)))}</td>
              </tr>`,
        )}
        ${data.described.length === 0 && html`<tr><td colspan="6" class="muted">No topics you may see.</td></tr>`}
      </tbody>
    </table>
    <h3>Consumer groups</h3>
    <table class="grid" id="overview-groups">
      <thead><tr><th>Group</th><th>Topics</th><th>Backlog</th><th>Unsettled</th><th>In flight</th>
        <th>Retrying</th><th>Dead letters</th><th>Oldest unacked</th><th>Consume rate</th></tr></thead>
      <tbody>
        ${data.lags.map((l) => {
          const name = l.summary.group.name;
          const qs = l.queues ?? [];
          return html`<tr>
            <td><a href=${'#/groups/' + encodeURIComponent(name)}>${name}</a></td>
            <td>${(l.summary.topics ?? []).join(', ')}</td>
            ${l.error
              ? html`<td colspan="7" class="muted">${l.error.message}</td>`
              : html`<td>${fmtNum(sum(qs, (q) => q.backlog))}</td>
                  <td>${fmtNum(sum(qs, (q) => q.unsettled))}</td>
                  <td>${fmtNum(sum(qs, (q) => q.in_flight))}</td>
                  <td>${fmtNum(sum(qs, (q) => q.retrying))}</td>
                  <td>${sum(qs, (q) => q.dead_letters) > 0
                    ? html`<a href=${'#/groups/' + encodeURIComponent(name) + '/dead-letters'}>${fmtNum(sum(qs, (q) => q.dead_letters))}</a>`
                    : '0'}</td>
                  <td>${fmtAge(Math.max(0, ...qs.map((q) => num(q.oldest_unacked_age_ms))))}</td>
                  <td>${fmtRate(rate(base, data, 'g:' + name, data.values.get('g:' + name)))}</td>`}
          </tr>`;
        })}
        ${data.lags.length === 0 && html`<tr><td colspan="9" class="muted">No groups you may see.</td></tr>`}
      </tbody>
    </table>
    ${c.error
      ? html`<p class="muted">Brokers and database: ${c.error.message}</p>`
      : html`<div class="cards">
          <div class="card" id="overview-database">
            <h3>Database</h3>
            <dl>
              <dt>PostgreSQL</dt><dd>${c.database.server_version}${c.database.in_recovery ? ' (standby!)' : ''}</dd>
              <dt>Size</dt><dd>${fmtBytes(c.database.size_bytes)} (messages ${fmtBytes(c.database.messages_bytes)})</dd>
              <dt>Connections</dt><dd>${c.database.connections} of ${c.database.max_connections}</dd>
            </dl>
          </div>
          <div class="card" id="overview-brokers">
            <h3>Brokers</h3>
            <table class="grid"><thead><tr><th>Broker</th><th>Version</th><th>Listen</th><th>Started</th><th>State</th></tr></thead>
              <tbody>${(c.brokers ?? []).map(
                (b) => html`<tr><td>${b.broker_id}</td><td>${b.version}</td><td>${b.listen}</td>
                  <td>${fmtTime(b.started_at_unix_ms)}</td>
                  <td class=${b.alive ? 'ok' : 'bad'}>${b.alive ? 'up' : 'gone since ' + fmtTime(b.seen_at_unix_ms)}</td></tr>`,
              )}</tbody></table>
          </div>
          <div class="card" id="overview-checkers">
            <h3>Relays (back-check streams)</h3>
            ${(c.checkers ?? []).length === 0
              ? html`<p class="muted">No checker connected.</p>`
              : html`<table class="grid"><thead><tr><th>Producer group</th><th>Broker</th><th>Checkers</th></tr></thead>
                  <tbody>${c.checkers.map(
                    (k) => html`<tr><td>${k.producer_group}</td><td>${k.broker_id}</td><td>${k.checkers}</td></tr>`,
                  )}</tbody></table>`}
          </div>
        </div>`}
  </section>`;
}
