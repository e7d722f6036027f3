// Ferry console: sign-in, navigation and the hash router (#/topics/orders, ...).
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { call, permissions, token, ApiError } from './api.js';
import { html, ErrorBox } from './ui.js';
import { Overview } from './pages/overview.js';
import { Topics, TopicPage } from './pages/topics.js';
import { Groups, GroupPage } from './pages/groups.js';
import { Messages, MessagePage } from './pages/messages.js';
import { DeadLetters } from './pages/dead_letters.js';
import { Transactions } from './pages/transactions.js';

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const on = () => setHash(location.hash);
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  const [path, query = ''] = hash.replace(/^#\/?/, '').split('?');
  return {
    parts: path.split('/').filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(query),
  };
}

function SignIn({ error, onSignedIn }) {
  const [value, setValue] = useState('');
  const [err, setErr] = useState(error);
  const submit = async (e) => {
    e.preventDefault();
    token.set(value.trim());
    try {
      onSignedIn(await call('WhoAmI'));
    } catch (x) {
      token.clear();
      setErr(x);
    }
  };
  return html`<main class="signin">
    <h1>Ferry</h1>
    <form onSubmit=${submit}>
      <p>This broker runs with <code>--auth</code>: sign in with a Ferry token
        (<code>ferryctl auth create</code> or <code>ferry-broker create-admin</code> prints one).
        It is kept in this tab only.</p>
      <label class="field"><span>Token</span>
        <input type="password" name="token" autocomplete="off" value=${value}
          onInput=${(e) => setValue(e.target.value)} autofocus />
      </label>
      <${ErrorBox} error=${err} />
      <button class="primary" type="submit" disabled=${!value.trim()}>Sign in</button>
    </form>
  </main>`;
}

const NAV = [
  ['', 'Overview'],
  ['topics', 'Topics'],
  ['groups', 'Groups'],
  ['messages', 'Messages'],
  ['transactions', 'Transactions'],
];

function Page({ parts, query, perms }) {
  const [first, second, third, fourth] = parts;
  const props = { perms, query };
  switch (first) {
    case undefined:
      return html`<${Overview} ...${props} />`;
    case 'topics':
      return second ? html`<${TopicPage} name=${second} ...${props} />` : html`<${Topics} ...${props} />`;
    case 'groups':
      if (second && third === 'dead-letters') return html`<${DeadLetters} group=${second} ...${props} />`;
      return second ? html`<${GroupPage} name=${second} ...${props} />` : html`<${Groups} ...${props} />`;
    case 'messages':
      if (second && third !== undefined && fourth !== undefined) {
        return html`<${MessagePage} topic=${second} queue=${third} offset=${fourth} ...${props} />`;
      }
      return html`<${Messages} ...${props} />`;
    case 'transactions':
      return html`<${Transactions} ...${props} />`;
    default:
      return html`<p>No such page. <a href="#/">Overview</a></p>`;
  }
}

function App() {
  const [who, setWho] = useState(null);
  const [error, setError] = useState(null);
  const { parts, query } = useHash();
  useEffect(() => {
    call('WhoAmI').then(setWho, setError);
  }, []);
  if (!who) {
    if (error instanceof ApiError && error.code === 'UNAUTHENTICATED') {
      return html`<${SignIn} error=${token.get() ? error : null} onSignedIn=${setWho} />`;
    }
    return error ? html`<main><${ErrorBox} error=${error} /></main>` : html`<main>Loading…</main>`;
  }
  const perms = permissions(who);
  const signOut = () => {
    token.clear();
    setWho(null);
    setError(new ApiError('UNAUTHENTICATED', 'signed out', 401));
  };
  return html`<div class="shell">
    <header>
      <a class="brand" href="#/">Ferry</a>
      <nav>
        ${NAV.map(
          ([path, label]) =>
            html`<a href=${'#/' + path} class=${(parts[0] ?? '') === path ? 'active' : ''}>${label}</a>`,
        )}
      </nav>
      <div class="who">
        <span title="principal">${who.principal}</span>
        ${!perms.canChangeAnything && html`<span class="badge">read-only</span>`}
        ${who.auth_enabled && html`<button onClick=${signOut}>Sign out</button>`}
      </div>
    </header>
    <main><${Page} parts=${parts} query=${query} perms=${perms} /></main>
  </div>`;
}

render(html`<${App} />`, document.getElementById('app'));
