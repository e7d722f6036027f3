import { b64ToBytes, num } from './api.js';

export function fmtNum(v) {
  return num(v).toLocaleString('en-US');
}

export function fmtTime(ms) {
  const n = num(ms);
  if (!n) return '—';
  return new Date(n).toISOString().replace('T', ' ').replace('Z', ' UTC');
}

export function fmtAge(ms) {
  let s = Math.round(num(ms) / 1000);
  if (s <= 0) return '—';
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  s %= 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function fmtBytes(v) {
  let n = num(v);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtRate(perSecond) {
  if (perSecond === null || perSecond === undefined || Number.isNaN(perSecond)) return '—';
  return `${perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond).toLocaleString('en-US')}/s`;
}

// A payload as what it is: JSON (pretty-printed), UTF-8 text, or a hex dump.
export function describePayload(b64) {
  const bytes = b64ToBytes(b64);
  let text = null;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    text = null;
  }
  if (text !== null) {
    const trimmed = text.trim();
    if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
      try {
        return { kind: 'json', bytes, text: JSON.stringify(JSON.parse(trimmed), null, 2) };
      } catch {
        /* not JSON after all */
      }
    }
    return { kind: 'text', bytes, text };
  }
  return { kind: 'binary', bytes, text: hexDump(bytes) };
}

export function hexDump(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = Array.from(bytes.slice(i, i + 16));
    const hex = row.map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${i.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

export function preview(b64, max = 80) {
  const p = describePayload(b64);
  const t = p.kind === 'binary' ? `(${p.bytes.length} bytes binary)` : p.text.replace(/\s+/g, ' ');
  return t.length > max ? t.slice(0, max) + '…' : t;
}

// "name: value" lines -> headers map.
export function parseHeaders(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const i = line.indexOf(':');
    if (i <= 0) throw new Error(`header line "${line}" is not "name: value"`);
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}
