// The console's one way into Ferry: POST /api/<service>/<method> with the request message in
// protobuf JSON; the broker turns it into the same gRPC call ferryctl makes (same validation,
// authorization and audit). The token stays in this tab's sessionStorage.
const TOKEN_KEY = 'ferry-token';

export class ApiError extends Error {
  constructor(code, message, httpStatus) {
    super(message);
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) || '',
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export async function call(method, body = {}, service = 'ferry.v1.Admin') {
  const headers = { 'Content-Type': 'application/json' };
  const t = token.get();
  if (t) headers.Authorization = 'Bearer ' + t;
  let r;
  try {
    r = await fetch(`api/${service}/${method}`, {
      method: 'POST',
      headers,
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError('UNAVAILABLE', 'the broker did not answer: ' + e.message, 0);
  }
  const data = await r.json().catch(() => ({ code: 'UNKNOWN', message: r.statusText }));
  if (!r.ok) throw new ApiError(data.code, data.message, r.status);
  return data;
}

export const produce = (body) => call('Produce', body, 'ferry.v1.Broker');

// What the signed-in principal may do, by the broker's own rule (broker/auth.cc Allows):
// admin implies the rest; a cluster grant covers cluster operations (admin: everything).
export function permissions(who) {
  const grants = who?.grants ?? [];
  const open = !who?.auth_enabled;
  const can = (permission, kind, name = '*') =>
    open ||
    grants.some((g) => {
      if (g.permission !== permission && g.permission !== 'admin') return false;
      if (g.resource_type === 'cluster') return g.permission === 'admin' || kind === 'cluster';
      return g.resource_type === kind && (g.resource_name === name || g.resource_name === '*');
    });
  // Whether any change at all is allowed (a read-only principal sees no change buttons).
  const canChangeAnything = open || grants.some((g) => g.permission === 'admin');
  return { can, open, canChangeAnything };
}

// Protobuf JSON: 64-bit integers arrive as strings.
export const num = (v) => (v === undefined || v === null || v === '' ? 0 : Number(v));

export function b64ToBytes(b64) {
  const bin = atob(b64 || '');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export function textToB64(text) {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}
