// The console tests' real parts: a database of their own in the test PostgreSQL
// (FERRY_TEST_PG, from scripts/with-test-postgres.sh), a ferry-broker with --auth and
// --console-listen, ferryctl for setting the scene, and Debian's Chromium driven by
// playwright-core (its own browser download is never used).
import { execFileSync, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '../..');
const require = createRequire(join(root, 'console/package.json'));
export const { chromium } = require('playwright-core');

export const bin = process.env.FERRY_BIN ?? join(root, 'build/bin');

export function chromiumPath() {
  for (const p of [process.env.FERRY_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser']) {
    if (p && existsSync(p)) return p;
  }
  throw new Error('Chromium not found: scripts/install-deps.sh installs Debian\'s chromium');
}

// Debian's Chromium as root in a container, on a machine with no outside network.
export async function launchBrowser() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
}

function psql(conninfo, sql) {
  return execFileSync('psql', [conninfo, '-qAtX', '-v', 'ON_ERROR_STOP=1', '-c', sql], { encoding: 'utf8' });
}

export function createDatabase(name) {
  const base = process.env.FERRY_TEST_PG;
  if (!base) throw new Error('FERRY_TEST_PG is not set: run under scripts/with-test-postgres.sh');
  psql(base, `DROP DATABASE IF EXISTS ${name}`);
  psql(base, `CREATE DATABASE ${name}`);
  return base.replace(/dbname=\S+/, `dbname=${name}`);
}

export { psql };

// Starts ferry-broker; resolves once its log names both ports.
export async function startBroker(conninfo, extra = []) {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-console-'));
  const log = join(dir, 'broker.log');
  const { openSync } = await import('node:fs');
  const fd = openSync(log, 'a');
  const child = spawn(
    join(bin, 'ferry-broker'),
    ['--database-url', conninfo, '--listen', '127.0.0.1:0', '--console-listen', '127.0.0.1:0',
      '--stats-interval-ms', '1000', ...extra],
    { stdio: ['ignore', fd, fd] },
  );
  const deadline = Date.now() + 20000;
  for (;;) {
    const text = readFileSync(log, 'utf8');
    const grpc = text.match(/event=serving listen=\S+ port=(\d+)/);
    const web = text.match(/event=console_serving listen=\S+ port=(\d+)/);
    if (grpc && web) {
      return { child, log, grpcPort: Number(grpc[1]), consolePort: Number(web[1]), dir,
        stop: () => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }) };
    }
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error('ferry-broker did not start:\n' + text);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function createAdmin(conninfo, name) {
  return execFileSync(join(bin, 'ferry-broker'), ['create-admin', name, '--database-url', conninfo],
    { encoding: 'utf8' }).trim();
}

// ferryctl against the broker, as `token`; returns stdout (throws with stderr on failure).
export function ferryctl(broker, token, args, input) {
  try {
    return execFileSync(join(bin, 'ferryctl'), ['--broker', `127.0.0.1:${broker.grpcPort}`, ...args], {
      encoding: 'utf8',
      env: { ...process.env, FERRY_TOKEN: token },
      input,
    });
  } catch (e) {
    throw new Error(`ferryctl ${args.join(' ')}: ${e.stderr || e.message}`);
  }
}

// The console's JSON API, as a browser would call it (the tests' direct checks).
export async function api(broker, token, method, body = {}, service = 'ferry.v1.Admin') {
  const r = await fetch(`http://127.0.0.1:${broker.consolePort}/api/${service}/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...(token ? { Authorization: 'Bearer ' + token } : {}) },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

// Where screenshots go: FERRY_CONSOLE_SCREENSHOTS (make console-screenshots sets docs/console).
export const screenshotDir = process.env.FERRY_CONSOLE_SCREENSHOTS || '';
