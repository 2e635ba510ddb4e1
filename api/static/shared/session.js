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

// Ten colours told apart at a glance, in a tag as in a dot: no two hues close at the same lightness
// (an amber beside the orange read as one colour), and dark enough for white text.
const PALETTE = ['#e8590c', '#1c7ed6', '#2f9e44', '#ae3ec9', '#8b5e34', '#0c8599', '#e03131', '#5f3dc4', '#c2255c', '#66a80f'];

/** Where a user id falls in the palette. @param {string} userId */
function paletteIndex(userId) {
  let hash = 0;
  for (const ch of String(userId)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % PALETTE.length;
}

/** A stable colour for a user id. @param {string} userId */
export function colourFor(userId) {
  return PALETTE[paletteIndex(userId)];
}

/**
 * A colour for each of the people in a room, no two alike while there are colours to spare. Ten
 * colours by id alone give two of four people the same one about half the time; here each keeps the
 * colour of their id unless someone with a smaller id has it, and then takes the next one free. It
 * depends only on who is in the room, so everyone there sees the same colours; a person arriving or
 * leaving moves only people whose id's colour they share, or who took another colour for one.
 * @param {Iterable<string>} userIds @returns {Map<string, string>}
 */
export function roomColours(userIds) {
  const ids = [...new Set(userIds)].sort();
  const taken = new Set(ids.map(paletteIndex));
  const used = new Set();
  /** @type {Map<string, string>} */
  const colours = new Map();
  for (const id of ids) {
    let index = paletteIndex(id);
    if (used.has(index)) {
      // Past every colour someone's id asks for first, so a clash takes no one else's own colour.
      let step = 1;
      while (step < PALETTE.length && (used.has((index + step) % PALETTE.length) || taken.has((index + step) % PALETTE.length))) step += 1;
      if (step === PALETTE.length) {
        step = 1;
        while (step < PALETTE.length && used.has((index + step) % PALETTE.length)) step += 1;
      }
      index = (index + step) % PALETTE.length;
    }
    used.add(index);
    colours.set(id, PALETTE[index]);
  }
  return colours;
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
 * A page's session across the end of its token. There is no sign-in endpoint: a new token comes from
 * the person, pasted into the banner this shows (`token_expiring`: the time the session ends; an
 * expired token: that it ended, and what the page keeps meanwhile). The page itself stays as it is.
 * Give the client `getToken: session.getToken` (asked on `token_expiring` and after the server closed
 * for an expired token): it answers with a new token given to this tab, else waits until the person
 * pastes one. A pasted token for someone else, or already expired, is refused on the spot; one the
 * server refuses is said in the banner, which stays.
 */
export class TokenSession {
  /**
   * @param {{banner: HTMLElement, me: {id: string, name: string}, mint: string, kept?: () => string,
   *   onChange?: () => void}} options `mint`: the command that mints a token for this person; `kept`: what
   *   the page keeps until a new token comes, said once the session ended; `onChange`: called when the
   *   session ends (the server closed for its token) and when a new token took
   */
  constructor({ banner, me, mint, kept, onChange }) {
    this.banner = banner;
    this.me = me;
    this.mint = mint;
    this.kept = kept ?? (() => 'Paste a new token to reconnect.');
    this.onChange = onChange ?? (() => {});
    /** @type {any} the CollabClient, once attached */
    this.client = null;
    /** When the token in use expires. @type {Date | null} */
    this.expiresAt = null;
    /** The server closed the connection: the token expired (or a pasted one was refused). */
    this.ended = false;
    /** A token pasted and not yet accepted by the server. @type {string | null} */
    this.pasted = null;
    /** What was wrong with the last token pasted. */
    this.note = '';
    this.shown = false;
    /** getToken() calls waiting for the person. @type {((token: string) => void)[]} */
    this.waiting = [];
    /** Those waiting for the session to be back (see `live()`). @type {(() => void)[]} */
    this.waitingLive = [];
    this.text = el('span', { class: 'session-text' });
    this.input = /** @type {HTMLInputElement} */ (
      el('input', { type: 'text', placeholder: 'Paste a new token (eyJ…)', 'aria-label': 'New token', autocomplete: 'off', spellcheck: 'false' })
    );
    this.form = el(
      'form',
      {
        class: 'session-form',
        onsubmit: (/** @type {Event} */ e) => {
          e.preventDefault();
          this.usePasted(this.input.value.trim());
        },
      },
      this.input,
      el('button', { class: 'button small', type: 'submit' }, 'Use this token'),
    );
    this.getToken = this.getToken.bind(this);
  }

  /** For the client's `getToken`: a new token given to this tab, else one the person pastes. */
  getToken() {
    const stored = takeToken();
    const exp = claimsOf(stored)?.exp;
    if (stored && stored !== this.client?.token && !(exp && exp * 1000 <= Date.now())) return stored;
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.show();
    });
  }

  /** Follows the client's token: when it is about to end, when it ended, when a new one took. @param {any} client */
  attach(client) {
    this.client = client;
    const exp = claimsOf(client.token)?.exp;
    this.expiresAt = exp ? new Date(exp * 1000) : null;
    client.on('token_expiring', (/** @type {any} */ m) => {
      this.expiresAt = new Date(m.expires_at);
      if (this.shown) this.show();
    });
    client.on('token_refreshed', () => this.accepted());
    client.on('token_refresh_failed', (/** @type {Error} */ error) => {
      this.note = `The server refused that token (${error.message}).`;
      this.show();
    });
    client.on('disconnected', (/** @type {{code: number}} */ { code }) => {
      if (code !== 4401) return;
      if (this.pasted && client.token === this.pasted) this.note = 'The server refused the token you pasted.';
      this.ended = true;
      this.show();
      this.onChange();
    });
    client.on('ready', () => this.ended && this.accepted());
  }

  /** Resolves at once while the session lasts, else once a new token took (for calls it would refuse). */
  live() {
    return this.ended ? new Promise((resolve) => this.waitingLive.push(() => resolve(undefined))) : Promise.resolve();
  }

  /** Shows the banner, or says it again (a new expiry time, another count of what is kept). */
  show() {
    const at = this.expiresAt ? clock(this.expiresAt.toISOString()) : 'soon';
    const text = this.ended
      ? `Your session ended at ${at}. ${this.kept()}`
      : `Your session ends at ${at}. There is no sign-in page: paste a new token to stay connected (mint one with: ${this.mint}).`;
    this.text.textContent = this.note ? `${this.note} ${text}` : text;
    if (!this.shown || this.banner.firstChild !== this.text) fill(this.banner, this.text, this.form);
    this.banner.className = this.ended ? 'banner' : 'banner info';
    this.banner.hidden = false;
    this.shown = true;
    document.body.dataset.session = this.ended ? 'ended' : 'ending';
  }

  /** Says the banner again if it is shown (what the page keeps changed). */
  refresh() {
    if (this.shown) this.show();
  }

  hide() {
    if (!this.shown) return;
    this.shown = false;
    if (this.banner.firstChild === this.text) this.banner.hidden = true;
    delete document.body.dataset.session;
  }

  /** @param {string} pasted */
  usePasted(pasted) {
    if (!pasted) return;
    const given = claimsOf(pasted);
    this.note =
      !given ? 'That is not a token.'
      : given.sub !== this.me.id ? `That token is for ${given.username ?? given.sub}, not for ${this.me.name}.`
      : given.exp && given.exp * 1000 <= Date.now() ? 'That token has expired already.'
      : '';
    if (this.note) {
      this.show();
      return;
    }
    storeToken(pasted);
    this.input.value = '';
    this.pasted = pasted;
    this.text.textContent = 'Checking the new token…';
    const resolvers = this.waiting;
    this.waiting = [];
    if (resolvers.length) for (const resolve of resolvers) resolve(pasted);
    else this.client?.refreshToken().catch(() => {}); // refused: `token_refresh_failed` says so
  }

  accepted() {
    const exp = claimsOf(this.client?.token)?.exp;
    this.expiresAt = exp ? new Date(exp * 1000) : null;
    this.ended = false;
    this.pasted = null;
    this.note = '';
    this.hide();
    const live = this.waitingLive;
    this.waitingLive = [];
    for (const resume of live) resume();
    this.onChange();
  }
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
