// Turns GetHistory points into chart series: values as they are, rates as the difference of
// two neighbouring samples over their distance.
import { num } from './api.js';

export function byTopic(points) {
  const out = new Map();
  for (const p of points ?? []) {
    if (!out.has(p.topic)) out.set(p.topic, []);
    out.get(p.topic).push(p);
  }
  return out;
}

export function values(points, field, scale = 1) {
  return points.map((p) => [num(p.at_unix_ms), num(p[field]) / scale]);
}

export function rates(points, field) {
  const out = [];
  for (let i = 1; i < points.length; i++) {
    const dt = (num(points[i].at_unix_ms) - num(points[i - 1].at_unix_ms)) / 1000;
    if (dt <= 0) continue;
    out.push([num(points[i].at_unix_ms), Math.max(0, (num(points[i][field]) - num(points[i - 1][field])) / dt)]);
  }
  return out;
}

export const RANGES = [
  ['1h', 3600e3],
  ['6h', 6 * 3600e3],
  ['24h', 24 * 3600e3],
  ['7d', 7 * 24 * 3600e3],
];
