// Transactions: undecided, check-exhausted and recent ones with their check history and audit
// trail; commit, roll back or re-arm, each with a required reason.
import { useState } from 'preact/hooks';
import { call } from '../api.js';
import { html, usePoll, ErrorBox, Notice, Confirm } from '../ui.js';
import { fmtTime, preview } from '../format.js';

// What a decision would make visible (its half messages) or release (the ACKs attached to it).
function TxnContents({ id }) {
  const { data, error } = usePoll(() => call('GetTransaction', { transaction_id: id }), [id], 0);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!data) return html`<p class="muted">Loading…</p>`;
  const messages = data.messages ?? [];
  const acks = data.acks ?? [];
  return html`<div class="txn-contents">
    <h4>Messages (${messages.length})</h4>
    ${messages.length === 0
      ? html`<p class="muted">None held: ${data.transaction.state === 'TXN_PREPARED' || data.transaction.state === 'TXN_CHECK_EXHAUSTED' ? 'it has produced nothing yet' : 'a decided transaction\'s messages are in their queues or gone'}.</p>`
      : html`<table class="grid txn-messages"><thead><tr><th>Topic</th><th>Key</th><th>Dedup id</th><th>Payload</th></tr></thead>
          <tbody>${messages.map((m) => html`<tr><td>${m.topic}</td><td>${m.key}</td><td>${m.dedup_id}</td>
            <td class="payload-preview">${preview(m.payload, 100)}</td></tr>`)}</tbody></table>`}
    ${acks.length > 0 &&
    html`<h4>ACKs attached (${acks.length})</h4>
      <table class="grid txn-acks"><thead><tr><th>Group</th><th>Topic</th><th>Queue</th><th>Offset</th></tr></thead>
        <tbody>${acks.map((a) => html`<tr><td>${a.group}</td><td>${a.topic}</td><td>${a.queue}</td><td>${a.offset}</td></tr>`)}</tbody></table>`}
  </div>`;
}

const STATES = [
  ['', 'all'],
  ['TXN_PREPARED', 'undecided'],
  ['TXN_CHECK_EXHAUSTED', 'check exhausted'],
  ['TXN_COMMITTED', 'committed'],
  ['TXN_ROLLED_BACK', 'rolled back'],
];

const STATE_TEXT = Object.fromEntries(STATES);

export function Transactions({ perms, query }) {
  const [state, setState] = useState(query.get('state') ?? '');
  const [producerGroup, setProducerGroup] = useState('');
  const { data, error, reload } = usePoll(
    () => call('ListTransactions', { state: state || 'TRANSACTION_STATE_UNSPECIFIED', producer_group: producerGroup, limit: 200 }),
    [state, producerGroup],
    5000,
  );
  const [open, setOpen] = useState(null);
  const [action, setAction] = useState(null);  // { txn, kind: 'commit' | 'rollback' | 'rearm' }
  const [notice, setNotice] = useState(null);
  const run = async (reason) => {
    const id = action.txn.transaction_id;
    if (action.kind === 'rearm') {
      await call('RearmTransactionChecks', { transaction_id: id, reason });
    } else {
      await call('ResolveTransaction', {
        transaction_id: id,
        decision: action.kind === 'commit' ? 'TRANSACTION_COMMIT' : 'TRANSACTION_ROLLBACK',
        reason,
      });
    }
    setNotice(`Transaction ${id}: ${action.kind === 'rearm' ? 're-armed' : action.kind === 'commit' ? 'committed' : 'rolled back'}.`);
    reload();
  };
  return html`<section>
    <h2>Transactions</h2>
    <div class="toolbar">
      <span class="ranges">${STATES.map(
        ([s, label]) => html`<button class=${s === state ? 'active' : ''} onClick=${() => setState(s)}>${label}</button>`,
      )}</span>
      <input placeholder="producer group" name="producer_group" value=${producerGroup} onInput=${(e) => setProducerGroup(e.target.value)} />
    </div>
    <${ErrorBox} error=${error} /><${Notice} notice=${notice} />
    <table class="grid" id="transactions">
      <thead><tr><th>Id</th><th>Producer group</th><th>State</th><th>Began</th><th>Checks</th>
        <th>Messages</th><th>ACKs held</th><th>Topics</th><th>Checker</th><th></th></tr></thead>
      <tbody>${(data?.transactions ?? []).map((t) => {
        const undecided = t.state === 'TXN_PREPARED' || t.state === 'TXN_CHECK_EXHAUSTED';
        const admin = perms.can('admin', 'group', t.producer_group);
        return html`<tr class=${t.state}>
            <td><button class="link" onClick=${() => setOpen(open === t.transaction_id ? null : t.transaction_id)}>${t.transaction_id}</button></td>
            <td>${t.producer_group}</td><td class=${'state ' + t.state}>${STATE_TEXT[t.state] ?? t.state}</td>
            <td>${fmtTime(t.began_at_unix_ms)}</td><td>${t.checks_sent}</td><td>${t.messages}</td>
            <td>${t.attached_acks}</td><td>${(t.topics ?? []).join(', ')}</td>
            <td>${undecided ? (t.checker_connected ? 'connected' : 'none') : ''}</td>
            <td class="actions">${undecided && admin &&
              html`<button onClick=${() => setAction({ txn: t, kind: 'commit' })}>Commit…</button>
                <button onClick=${() => setAction({ txn: t, kind: 'rollback' })}>Roll back…</button>
                ${t.state === 'TXN_CHECK_EXHAUSTED' && html`<button onClick=${() => setAction({ txn: t, kind: 'rearm' })}>Re-arm…</button>`}`}</td>
          </tr>
          ${open === t.transaction_id &&
          html`<tr class="detail"><td colspan="10">
            <p>check ref <code>${t.check_ref || '—'}</code> · ended ${fmtTime(t.ended_at_unix_ms)} ·
              next check ${fmtTime(t.next_check_at_unix_ms)}</p>
            ${perms.can('admin', 'group', t.producer_group) && html`<${TxnContents} id=${t.transaction_id} />`}
            <h4>Audit trail</h4>
            <table class="grid events"><thead><tr><th>At</th><th>Event</th><th>By</th><th>Detail</th></tr></thead>
              <tbody>${(t.events ?? []).map(
                (e) => html`<tr><td>${fmtTime(e.at_unix_ms)}</td><td>${e.kind}</td><td>${e.actor}</td><td>${e.detail}</td></tr>`,
              )}</tbody></table>
          </td></tr>`}`;
      })}
      ${(data?.transactions ?? []).length === 0 && html`<tr><td colspan="10" class="muted">No transactions.</td></tr>`}</tbody>
    </table>
    ${action &&
    html`<${Confirm} title=${`${action.kind === 'rearm' ? 'Re-arm checks of' : action.kind === 'commit' ? 'Commit' : 'Roll back'} ${action.txn.transaction_id}`}
      confirmLabel=${action.kind === 'rearm' ? 'Re-arm' : action.kind === 'commit' ? 'Commit' : 'Roll back'}
      danger=${action.kind !== 'rearm'} reason onConfirm=${run} onClose=${() => setAction(null)}>
      <p>${action.kind === 'commit'
        ? `Its ${action.txn.messages} messages become visible and its ${action.txn.attached_acks} ACKs apply.`
        : action.kind === 'rollback'
          ? `Its ${action.txn.messages} messages are discarded and its ${action.txn.attached_acks} ACKs released.`
          : 'Back-checks start again with the count reset.'}</p>
    </${Confirm}>`}
  </section>`;
}
