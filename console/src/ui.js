// Shared pieces: the html tag, polling, errors, charts, dialogs.
import { h } from 'preact';
import { useEffect, useRef, useState, useCallback } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';

export const html = htm.bind(h);

// Runs `load` now and every `ms` (0: once); returns { data, error, reload }. A failed refresh
// keeps the last data and shows the error beside it.
export function usePoll(load, deps, ms = 0) {
  const [state, setState] = useState({ data: null, error: null });
  const seq = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++seq.current;
    try {
      const data = await load();
      if (mine === seq.current) setState({ data, error: null });
    } catch (error) {
      if (mine === seq.current) setState((s) => ({ data: s.data, error }));
    }
  }, deps);
  useEffect(() => {
    reload();
    if (!ms) return undefined;
    const id = setInterval(reload, ms);
    return () => {
      seq.current++;
      clearInterval(id);
    };
  }, [reload, ms]);
  return { ...state, reload };
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <strong>${error.code || 'ERROR'}</strong> ${error.message}
  </div>`;
}

export function Notice({ notice }) {
  if (!notice) return null;
  return html`<div class="notice" role="status">${notice}</div>`;
}

// A line chart of one or more series over time. series: [{ label, points: [[ms, value]] }]
export function Chart({ title, series, unit = '' }) {
  const el = useRef(null);
  useEffect(() => {
    if (!el.current) return undefined;
    const times = [...new Set(series.flatMap((s) => s.points.map((p) => p[0])))].sort(
      (a, b) => a - b,
    );
    const index = new Map(times.map((t, i) => [t, i]));
    const data = [times.map((t) => t / 1000)];
    for (const s of series) {
      const col = new Array(times.length).fill(null);
      for (const [t, v] of s.points) col[index.get(t)] = v;
      data.push(col);
    }
    const colors = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2'];
    const plot = new uPlot(
      {
        width: Math.max(320, el.current.clientWidth || 560),
        height: 200,
        series: [
          {},
          ...series.map((s, i) => ({
            label: s.label,
            stroke: colors[i % colors.length],
            width: 1.5,
            spanGaps: false,
          })),
        ],
        axes: [{}, { values: (u, vals) => vals.map((v) => (v === null ? '' : `${v}${unit}`)) }],
        legend: { show: true },
      },
      data,
      el.current,
    );
    return () => plot.destroy();
  }, [JSON.stringify(series)]);
  const empty = series.every((s) => s.points.length === 0);
  return html`<figure class="chart">
    <figcaption>${title}</figcaption>
    ${empty
      ? html`<p class="muted">No samples yet: brokers record one every --stats-interval-ms.</p>`
      : html`<div ref=${el}></div>`}
  </figure>`;
}

// A modal that asks before a change. `requireText`: the user must type it (deleting a topic);
// `reason`: a required free-text reason (transactions). onConfirm(reason) may throw: the error
// is shown in the dialog.
export function Confirm({ title, children, confirmLabel, requireText, reason, danger, onConfirm, onClose }) {
  const [typed, setTyped] = useState('');
  const [why, setWhy] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const ok = (!requireText || typed === requireText) && (!reason || why.trim() !== '');
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      await onConfirm(why.trim());
      onClose();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<div class="modal-backdrop">
    <form class="modal" role="dialog" aria-label=${title} onSubmit=${submit}>
      <h3>${title}</h3>
      ${children}
      ${requireText &&
      html`<label>Type <code>${requireText}</code> to confirm
        <input name="confirm-text" value=${typed} onInput=${(e) => setTyped(e.target.value)} autofocus />
      </label>`}
      ${reason &&
      html`<label>Reason (kept in the audit trail)
        <input name="reason" value=${why} onInput=${(e) => setWhy(e.target.value)} autofocus />
      </label>`}
      <${ErrorBox} error=${error} />
      <div class="actions">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class=${danger ? 'danger' : 'primary'} disabled=${!ok || busy}>
          ${confirmLabel}
        </button>
      </div>
    </form>
  </div>`;
}

export function Field({ label, children, hint }) {
  return html`<label class="field"><span>${label}</span>${children}${hint &&
    html`<small class="muted">${hint}</small>`}</label>`;
}
