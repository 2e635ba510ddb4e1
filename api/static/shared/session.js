// What every page needs: the token from the URL fragment, who it names, colours per user, and a
// small DOM builder (text always goes in as text, never as HTML).

const TOKEN_KEY = 'collab.token';

/**
 * The token for this tab. A `#token=...` fragment (browsers never send fragments to the server) is
 * moved to sessionStorage and taken out of the address bar, so it is not bookmarked or shared.
 * @returns {string | null}
 */
export function takeToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const given = fragment.get('token');
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    fragment.delete('token');
    const rest = fragment.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? `#${rest}` : ''));
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/** @param {string} token */
export function storeToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

/**
 * The token's claims, decoded without verifying (the server verifies; this only labels the page).
 * @param {string | null} token
 * @returns {{sub?: string, username?: string, roles?: string[], exp?: number} | null}
 */
export function claimsOf(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      [...atob(payload)].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

const PALETTE = ['#e8590c', '#1c7ed6', '#2f9e44', '#ae3ec9', '#f08c00', '#0c8599', '#e03131', '#5f3dc4', '#c2255c', '#66a80f'];

/** A stable colour for a user id. @param {string} userId */
export function colourFor(userId) {
  let hash = 0;
  for (const ch of String(userId)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

/** Up to two initials of a name. @param {string} name */
export function initials(name) {
  const parts = String(name || '?').split(/[\s._-]+/).filter(Boolean);
  return (parts.length > 1 ? parts[0][0] + parts[1][0] : String(name || '?').slice(0, 2)).toUpperCase();
}

/**
 * Builds an element: `el('button', {class: 'x', onclick: fn, dataset: {a: 1}}, 'text', child)`.
 * @param {string} tag @param {Record<string, any>} [attrs] @param {...(Node | string | number | null | undefined | false)} children
 */
export function el(tag, attrs = {}, ...children) {
  const node = tag === 'svg' || attrs.svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false || key === 'svg') continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'vars') for (const [name, v] of Object.entries(value)) node.style.setProperty(name, v);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces an element's children. @param {Element} node @param {...(Node | string)} children */
export function fill(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

/** An ISO time as local `HH:MM:SS`. @param {string} iso */
export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/**
 * Shows a form asking for a token (when the page was opened without one, or it expired).
 * @param {string} why @param {string} hint the command that mints a token for this page
 */
export function askForToken(why, hint) {
  const input = el('textarea', { id: 'token-input', rows: 4, placeholder: 'eyJhbGciOi…', spellcheck: 'false' });
  const dialog = el(
    'div',
    { class: 'token-gate' },
    el(
      'form',
      {
        class: 'card',
        onsubmit: (/** @type {Event} */ e) => {
          e.preventDefault();
          const token = input.value.trim();
          if (!token) return;
          storeToken(token);
          location.reload();
        },
      },
      el('h1', {}, 'Sign in with a token'),
      el('p', { class: 'muted' }, why),
      el('p', {}, 'Mint one on the server with:'),
      el('pre', {}, hint),
      el('p', { class: 'muted' }, 'or open one of the links `make run` prints.'),
      input,
      el('button', { class: 'button primary', type: 'submit' }, 'Open'),
    ),
  );
  document.body.replaceChildren(dialog);
}
