// A group's dead letters: reasons and attempts, multi-select, redrive in place (to this group,
// attempts reset), redrive to another topic, purge.
import { useState } from 'preact/hooks';
import { call, num } from '../api.js';
import { html, usePoll, ErrorBox, Notice, Confirm } from '../ui.js';
import { fmtTime, preview } from '../format.js';

const PAGE = 100;

export function DeadLetters({ group, perms }) {
  const [tokens, setTokens] = useState(['']);  // page tokens: the current page is the last
  const pageToken = tokens[tokens.length - 1];
  const { data, error, reload } = usePoll(
    () => call('ListDeadLetters', { group, page_size: PAGE, page_token: pageToken }),
    [group, pageToken],
    5000,
  );
  const [selected, setSelected] = useState(new Set());
  const [action, setAction] = useState(null);  // 'redrive' | 'move' | 'purge'
  const [toTopic, setToTopic] = useState('');
  const [notice, setNotice] = useState(null);
  const admin = perms.can('admin', 'group', group);
  const rows = data?.dead_letters ?? [];
  const toggle = (id) => {
    const s = new Set(selected);
    s.has(id) ? s.delete(id) : s.add(id);
    setSelected(s);
  };
  const allOnPage = rows.length > 0 && rows.every((d) => selected.has(d.id));
  const ids = [...selected];
  const run = async () => {
    if (action === 'purge') {
      const r = await call('PurgeDeadLetters', { group, ids });
      setNotice(`Purged ${num(r.purged)} dead letters.`);
    } else {
      const r = await call('RedriveDeadLetters', { group, ids, to_topic: action === 'move' ? toTopic : '' });
      const failed = (r.failures ?? []).map((x) => `${x.id}: ${x.reason}`).join('; ');
      setNotice(`Redrove ${num(r.redriven)}${action === 'move' ? ' to ' + toTopic : ''}.${failed ? ' Kept: ' + failed : ''}`);
    }
    setSelected(new Set());
    reload();
  };
  return html`<section>
    <h2>Dead letters of <a href=${'#/groups/' + encodeURIComponent(group)}>${group}</a></h2>
    <${ErrorBox} error=${error} /><${Notice} notice=${notice} />
    ${admin &&
    html`<div class="toolbar">
      <span>${selected.size} selected</span>
      <button disabled=${!selected.size} onClick=${() => setAction('redrive')}>Redrive to ${group}</button>
      <input placeholder="another topic" name="to_topic" value=${toTopic} onInput=${(e) => setToTopic(e.target.value)} />
      <button disabled=${!selected.size || !toTopic} onClick=${() => setAction('move')}>Redrive to topic</button>
      <button class="danger" disabled=${!selected.size} onClick=${() => setAction('purge')}>Purge</button>
    </div>`}
    <table class="grid" id="dead-letters">
      <thead><tr>${admin && html`<th><input type="checkbox" aria-label="select page" checked=${allOnPage}
          onChange=${() => { const s = new Set(selected); rows.forEach((d) => (allOnPage ? s.delete(d.id) : s.add(d.id))); setSelected(s); }} /></th>`}
        <th>Id</th><th>Message</th><th>Key</th><th>Attempts</th><th>Reason</th><th>Died</th><th>Payload</th></tr></thead>
      <tbody>${rows.map(
        (d) => html`<tr>
          ${admin && html`<td><input type="checkbox" aria-label=${'select ' + d.id} checked=${selected.has(d.id)} onChange=${() => toggle(d.id)} /></td>`}
          <td>${d.id}</td>
          <td><a href=${`#/messages/${encodeURIComponent(d.topic)}/${d.queue}/${d.offset}`}>${d.topic} ${d.queue}:${d.offset}</a></td>
          <td>${d.key}</td><td>${d.attempts}</td><td class="reason">${d.reason}</td>
          <td>${fmtTime(d.dead_at_unix_ms)}</td><td class="payload-preview">${preview(d.payload, 40)}</td></tr>`,
      )}
      ${rows.length === 0 && html`<tr><td colspan="8" class="muted">No dead letters.</td></tr>`}</tbody>
    </table>
    <div class="pager">
      <button disabled=${tokens.length <= 1} onClick=${() => setTokens(tokens.slice(0, -1))}>Previous page</button>
      <button disabled=${!data?.next_page_token} onClick=${() => setTokens([...tokens, data.next_page_token])}>Next page</button>
    </div>
    ${action &&
    html`<${Confirm} title=${action === 'purge' ? 'Purge dead letters' : 'Redrive dead letters'}
      confirmLabel=${action === 'purge' ? `Purge ${ids.length}` : `Redrive ${ids.length}`} danger=${action === 'purge'}
      onConfirm=${run} onClose=${() => setAction(null)}>
      <p>${action === 'purge'
        ? `${ids.length} dead letters will be deleted for good.`
        : action === 'move'
          ? `${ids.length} messages will be produced again to topic ${toTopic} (every group of it sees them) and leave these dead letters.`
          : `${ids.length} messages will be delivered again to ${group} with their attempts reset.`}</p>
    </${Confirm}>`}
  </section>`;
}
