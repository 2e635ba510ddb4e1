// collab-client: the browser and Node client of collab-engine's WebSocket protocol (docs/protocol.md).
//
// One ES module, no dependencies, no build step. It keeps a connection alive (reconnect with backoff
// and jitter, following the close-code table), resumes every joined room with `join_room since`,
// drops replayed duplicates by `seq`, matches every durable message to its `ack` through
// `client_msg_id` (queued while offline and resent with the same id, so the server applies it once),
// tracks cells with their versions, and answers `token_expiring` through `getToken()`.

export const VERSION = '0.1.0';

/** Close codes of docs/protocol.md, "Close codes". */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  POLICY: 1008,
  TOO_LARGE: 1009,
  INTERNAL: 1011,
  RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  SLOW_CONSUMER: 4008,
  AUTHENTICATION_FAILED: 4401,
  ORIGIN_REFUSED: 4403,
  REMOVED: 4410,
  TOO_MANY_CONNECTIONS: 4429,
});

/** Messages the server persists in no sequence; never queued while offline (the next one replaces them). */
const VOLATILE = new Set(['cursor_move', 'typing_start', 'typing_stop', 'file_upload_progress']);
/** Server messages that carry a room `seq` but are not events to deduplicate. */
const NOT_ROOM_EVENTS = new Set(['room_state', 'replay_complete', 'ack', 'error', 'sheet_state']);
/** Errors after which the same message, with the same `client_msg_id`, may succeed later. */
const RETRYABLE = new Set(['RATE_LIMIT_EXCEEDED', 'INTERNAL_ERROR']);
const MAX_RETRIES = 5;
/** The messages that carry edits of cells (counted by `pendingEdits`). */
const EDITS = new Set(['cell_update', 'cells_update']);

/**
 * Whether a `room_left` is the server taking the connection out of the room, rather than the answer
 * to a `leave_room`: its `reason` is `revoked` (a refreshed token no longer allows the room), not
 * `left` (docs/protocol.md, "user_joined, user_left, room_left"). A frame without `reason` comes from
 * a server older than it, which a page can meet during a rolling upgrade (the client loaded from an
 * upgraded node, the socket on one not yet upgraded): there only the answer to a `leave_room` echoes
 * a `client_msg_id`, and this client sends every `leave_room` with one.
 * @param {{reason?: string, client_msg_id?: string}} message
 */
export function revokesRoom(message) {
  return typeof message.reason === 'string' ? message.reason === 'revoked' : !message.client_msg_id;
}

/**
 * What to do after a close with `code`: reconnect at once, after a backoff, after a new token, or
 * not at all (docs/protocol.md, "Close codes").
 * @param {number} code
 * @param {boolean} [closedByUs]
 * @returns {'now' | 'backoff' | 'token' | 'stop'}
 */
export function reconnectPolicy(code, closedByUs = false) {
  if (closedByUs) return 'stop';
  switch (code) {
    case CloseCode.RESTART:
      return 'now';
    case CloseCode.AUTHENTICATION_FAILED:
      return 'token';
    case CloseCode.TOO_LARGE:
    case CloseCode.REMOVED:
    case CloseCode.ORIGIN_REFUSED:
    case CloseCode.TOO_MANY_CONNECTIONS:
      return 'stop';
    default:
      return 'backoff';
  }
}

/**
 * Exponential backoff with jitter: attempt 0 waits about `initial`, each next one `factor` times
 * more, never above `max`; `jitter` (0-1) takes up to that fraction off at random so that clients
 * dropped together do not come back together.
 * @param {number} attempt
 * @param {{initial?: number, max?: number, factor?: number, jitter?: number}} [options]
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, options = {}, random = Math.random) {
  const { initial = 500, max = 15000, factor = 2, jitter = 0.5 } = options;
  const base = Math.min(max, initial * factor ** Math.max(0, attempt));
  return Math.round(base * (1 - jitter * random()));
}

/** An error the server answered (or the client decided), with the protocol's `code` and details. */
export class CollabError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {Record<string, any>} [payload] the server's error message, or HTTP error body
   */
  constructor(code, message, payload = {}) {
    super(message);
    this.name = 'CollabError';
    this.code = code;
    this.payload = payload;
    /** For VERSION_CONFLICT of a `cell_update`: the cell as the server has it. */
    this.current = payload.current;
    /** For VERSION_CONFLICT of a `cells_update`: `[{cell_id, current}]`. */
    this.conflicts = payload.conflicts;
    this.retryAfter = payload.retry_after;
    this.status = payload.status;
  }
}

/** A small event emitter: `on` returns a function that removes the listener. */
export class Emitter {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
  }

  /** @param {string} type @param {Function} listener @returns {() => void} */
  on(type, listener) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this.off(type, listener);
  }

  /** @param {string} type @param {Function} listener */
  off(type, listener) {
    this._listeners.get(type)?.delete(listener);
  }

  /** @param {string} type @param {Function} listener @returns {() => void} */
  once(type, listener) {
    const off = this.on(type, (/** @type {any[]} */ ...args) => {
      off();
      listener(...args);
    });
    return off;
  }

  /** @param {string} type @param {any} [value] */
  emit(type, value) {
    for (const listener of [...(this._listeners.get(type) ?? [])]) {
      try {
        listener(value);
      } catch (error) {
        // A listener's bug must not stop the protocol: report it and go on.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

/** A room this client is in: presence, cursors and typing, and the last `seq` it has seen. */
export class Room extends Emitter {
  /** @param {CollabClient} client @param {string} roomId */
  constructor(client, roomId) {
    super();
    this.client = client;
    this.id = roomId;
    /** The newest room `seq` applied; a resume asks for what follows it. @type {number | null} */
    this.seq = null;
    /** @type {Map<string, any>} user id -> the `room_state.users[]` entry */
    this.users = new Map();
    /** @type {Map<string, Map<string, string>>} cell id -> (user id -> username) typing there */
    this.typing = new Map();
    /** @type {string[]} */
    this.activeSheets = [];
    this.joined = false;
    /** The join sent on the current connection while it waits for its answer. @type {{ws: any, promise: Promise<Room>} | null} */
    this._joining = null;
  }

  /** The users present, sorted by name. */
  get members() {
    return [...this.users.values()].sort((a, b) => String(a.username).localeCompare(String(b.username)));
  }

  moveCursor(/** @type {number} */ x, /** @type {number} */ y, /** @type {string | undefined} */ cell) {
    const message = { type: 'cursor_move', room: this.id, x: Math.round(x), y: Math.round(y) };
    if (cell) Object.assign(message, { cell });
    return this.client.sendVolatile(message);
  }

  startTyping(/** @type {string} */ cellId) {
    return this.client.sendVolatile({ type: 'typing_start', room: this.id, cell_id: cellId });
  }

  stopTyping(/** @type {string} */ cellId) {
    return this.client.sendVolatile({ type: 'typing_stop', room: this.id, cell_id: cellId });
  }

  leave() {
    return this.client.leave(this.id);
  }

  /** @param {any} message */
  _applyState(message) {
    this.users = new Map((message.users ?? []).map((/** @type {any} */ u) => [u.user_id, u]));
    this.activeSheets = message.active_sheets ?? this.activeSheets;
    for (const [cell, who] of this.typing) {
      for (const userId of who.keys()) if (!this.users.has(userId)) who.delete(userId);
      if (!who.size) this.typing.delete(cell);
    }
    this.emit('presence', this.members);
  }

  /** @param {any} message */
  _apply(message) {
    switch (message.type) {
      case 'user_joined':
        this.users.set(message.user.user_id, message.user);
        this.emit('presence', this.members);
        break;
      case 'user_left':
        this.users.delete(message.user_id);
        for (const who of this.typing.values()) who.delete(message.user_id);
        this.emit('presence', this.members);
        this.emit('typing', this.typing);
        break;
      case 'cursor_moved': {
        const user = this.users.get(message.user_id);
        if (user) user.cursor = message.cursor;
        this.emit('cursor', message);
        break;
      }
      case 'user_typing_start':
      case 'user_typing_stop': {
        const who = this.typing.get(message.cell_id) ?? new Map();
        if (message.type === 'user_typing_start') who.set(message.user_id, message.username);
        else who.delete(message.user_id);
        if (who.size) this.typing.set(message.cell_id, who);
        else this.typing.delete(message.cell_id);
        this.emit('typing', this.typing);
        break;
      }
      case 'user_status_changed': {
        const user = this.users.get(message.user_id);
        if (user) {
          user.status = message.status;
          this.emit('presence', this.members);
        }
        break;
      }
      default:
        break;
    }
  }
}

/**
 * A sheet's cells as the server has them (with their versions), plus this client's edits not yet
 * acknowledged. Edits of one cell go out one after another, each on the version the previous one
 * produced, so a client never conflicts with itself; a stale edit is refused with VERSION_CONFLICT
 * and the cell shows the server's current value.
 */
export class Sheet extends Emitter {
  /** @param {CollabClient} client @param {string} sheetId @param {string} roomId */
  constructor(client, sheetId, roomId) {
    super();
    this.client = client;
    this.id = sheetId;
    this.roomId = roomId;
    /** @type {Map<string, {value: any, formula: string | null, version: number, user_id?: string | null, username?: string}>} */
    this.cells = new Map();
    /** @type {Map<string, {value: any, formula: string | null, op: any}>} edits awaiting their ack */
    this._local = new Map();
    /** @type {Map<string, any>} cell id -> the newest op touching it */
    this._last = new Map();
    /** @type {Map<string, any>} client_msg_id -> every op not yet settled (older ones too, whose echo may come late) */
    this._ops = new Map();
    /** Set when the server took this client out of the sheet's room: edits are refused until it joins again. @type {CollabError | null} */
    this.revoked = null;
    /** While the cells are reloaded after a room_reset: resolves once they are. @type {Promise<void> | null} */
    this._reloading = null;
    /** @type {(() => void) | null} */
    this._reloaded = null;
    /** Outbox entries of edits made on the history a room_reset discarded, with their ops. @type {{entry: any, op: any}[]} */
    this._held = [];
  }

  /** The cell as shown: this client's pending edit, else the server's. @param {string} cellId */
  get(cellId) {
    const local = this._local.get(cellId);
    const known = this.cells.get(cellId);
    if (local) return { ...(known ?? { version: 0 }), value: local.value, formula: local.formula, pending: true };
    return known ? { ...known, pending: false } : undefined;
  }

  /** Loads the cells (`load_sheet`; REST as of the room's seq on servers without it). */
  load() {
    return this._load(false);
  }

  /** @param {boolean} replace take the server's cells as they are, dropping what is known (a room_reset) */
  async _load(replace) {
    const room = await this.client._roomReady(this.roomId);
    let cells;
    try {
      const state = await this.client.request(
        { type: 'load_sheet', sheet_id: this.id },
        (/** @type {any} */ m) => m.type === 'sheet_state' && m.sheet_id === this.id,
      );
      cells = state.cells ?? {};
    } catch (error) {
      if (!(error instanceof CollabError) || error.code !== 'UNKNOWN_MESSAGE_TYPE') throw error;
      cells = await this._loadOverRest(room);
    }
    if (replace) {
      for (const cellId of [...this.cells.keys()]) {
        if (cellId in cells) continue;
        this.cells.delete(cellId);
        this.emit('change', { cell_id: cellId, cell: this.get(cellId), source: 'load' });
      }
      for (const cellId of Object.keys(cells)) this.cells.delete(cellId);
    }
    for (const [cellId, cell] of Object.entries(cells)) this._confirm(cellId, cell, 'load');
    this.emit('load', this);
    return this;
  }

  /**
   * The room's history on the server is not the one this client saw (a `room_reset`): cell values
   * and versions known here may never have existed there. Before the resume sends what waited, the
   * edits not yet acknowledged are taken out of the outbox: each was made on a cell as this client
   * saw it, and its version could pass the server's check and overwrite a value nobody here has seen.
   */
  _holdForReset() {
    if (!this._reloading) this._reloading = new Promise((resolve) => (this._reloaded = resolve));
    for (const op of this._ops.values()) {
      op.reset = true;
      const entry = this.client._outbox.get(op.id);
      if (!entry) continue; // not sent yet: `_send` refuses it once the cells are reloaded
      clearTimeout(entry.timer);
      this.client._outbox.delete(op.id);
      this._held.push({ entry, op });
    }
    this.client._queueChanged();
  }

  /** After a room_reset's rejoin: the server's cells replace what was known, then the held edits are refused as conflicts. */
  async _reloadAfterReset() {
    try {
      await this._load(true);
    } catch (error) {
      this.client.emit('server_error', error);
    }
    const held = this._held;
    this._held = [];
    for (const { entry, op } of held) entry.reject(this._resetConflict(op));
    this._reloading = null;
    this._reloaded?.();
  }

  /**
   * The refusal of an edit made on a history the server no longer has: a VERSION_CONFLICT against
   * the reloaded cells, with a `conflict` event (`reset: true`) for each of its cells.
   * @param {any} op
   */
  _resetConflict(op) {
    op.conflicted = true;
    const conflicts = op.cells.map((/** @type {any} */ c) => ({ cell_id: c.cell_id, current: this.cells.get(c.cell_id) }));
    const details = op.cells.length === 1 ? { current: conflicts[0].current } : { conflicts };
    const error = new CollabError(
      'VERSION_CONFLICT',
      "the room's history on the server is not the one this edit was made on",
      { ...details, reset: true },
    );
    for (const { cell_id, current } of conflicts) {
      const attempted = op.cells.find((/** @type {any} */ c) => c.cell_id === cell_id)?.value;
      this.emit('conflict', { sheet_id: this.id, cell_id, attempted, current, error, reset: true });
    }
    return error;
  }

  /** @param {Room} room */
  async _loadOverRest(room) {
    // A sheet not yet edited when the room was joined had no cells at that seq; live events follow.
    if (!room.activeSheets.includes(this.id)) return {};
    const seq = room.seq;
    const query = seq == null ? '' : `?seq=${seq}`;
    try {
      const found = await this.client.rest(`/api/v1/sheets/${encodeURIComponent(this.id)}/cells${query}`);
      return found.cells ?? {};
    } catch (error) {
      if (error instanceof CollabError && error.status === 404) return {}; // never edited yet
      throw error;
    }
  }

  /**
   * What an edit of `cellId` starting now is made on: pass it as `set(..., {base})` when the value is
   * committed later (an in-cell editor), so that a change someone else made meanwhile, which the
   * person typing never saw, makes the edit a VERSION_CONFLICT rather than being overwritten.
   * @param {string} cellId
   */
  editBase(cellId) {
    return this._last.get(cellId) ?? { version: this.cells.get(cellId)?.version ?? 0 };
  }

  /**
   * Sets one cell (`cell_update`). Resolves with the `ack` once the server committed it; rejects with
   * a CollabError (`VERSION_CONFLICT` carries `current`). The edit is made on the cell as shown now,
   * or on `options.base` (from `editBase()`) when given.
   * @param {string} cellId @param {any} value @param {{formula?: string | null, base?: any}} [options]
   */
  set(cellId, value, options = {}) {
    const bases = options.base ? new Map([[cellId, options.base]]) : undefined;
    return this._edit([{ cell_id: cellId, value, formula: options.formula ?? null }], bases);
  }

  /**
   * Sets a range in one message (`cells_update`): one event, all or nothing.
   * @param {{cell_id: string, value: any, formula?: string | null}[]} cells
   */
  setRange(cells) {
    return this._edit(cells.map((c) => ({ cell_id: c.cell_id, value: c.value, formula: c.formula ?? null })));
  }

  /** @param {{cell_id: string, value: any, formula: string | null}[]} cells @param {Map<string, any>} [bases] */
  _edit(cells, bases) {
    const op = { id: this.client.nextId(), cells, before: new Map(), results: new Map(), conflicted: false, reset: false };
    // Made while the cells are reloaded after a room_reset: on a value the server may never have had.
    if (this._reloading) op.reset = true;
    this._ops.set(op.id, op);
    for (const cell of cells) {
      const previous = this._last.get(cell.cell_id);
      // The version this edit is made on: the one the previous pending edit will produce, else the
      // version shown now. Taken now, not when sent, so an offline edit still conflicts with a
      // change made by someone else meanwhile.
      op.before.set(cell.cell_id, bases?.get(cell.cell_id) ?? previous ?? { version: this.cells.get(cell.cell_id)?.version ?? 0 });
      this._last.set(cell.cell_id, op);
      this._local.set(cell.cell_id, { value: cell.value, formula: cell.formula, op });
      this.emit('change', { cell_id: cell.cell_id, cell: this.get(cell.cell_id), source: 'local' });
    }
    op.promise = this._send(op).finally(() => this._settle(op));
    this.client._queueChanged(); // one more edit not yet acknowledged, even if it waits for another
    return op.promise;
  }

  /** @param {any} op */
  async _send(op) {
    const earlier = [...new Set([...op.before.values()].filter((b) => b.promise))];
    await Promise.allSettled(earlier.map((b) => b.promise));
    if (this.revoked) throw this.revoked;
    if (op.reset) {
      await this._reloading;
      throw this._resetConflict(op);
    }
    const lost = earlier.find((b) => b.conflicted);
    if (lost) {
      // Refused like a stale edit is, and told like one: a `conflict` per cell, else the value this
      // edit carried would vanish without a word (a range's cells are one refusal: `conflicts`
      // lists none of them, as none was checked by the server).
      op.conflicted = true;
      const error = new CollabError('VERSION_CONFLICT', 'an earlier edit of this cell conflicted', {
        current: this.cells.get(op.cells[0].cell_id),
        ...(op.cells.length > 1 ? { conflicts: [] } : {}),
      });
      for (const c of op.cells) {
        this.emit('conflict', { sheet_id: this.id, cell_id: c.cell_id, attempted: c.value, current: this.cells.get(c.cell_id), error });
      }
      throw error;
    }
    const version = (/** @type {string} */ cellId) => {
      const before = op.before.get(cellId);
      return before.promise ? (before.results.get(cellId) ?? this.cells.get(cellId)?.version ?? 0) : before.version;
    };
    const [single] = op.cells;
    /** @param {any} c */
    const wire = (c) => {
      const cell = { cell_id: c.cell_id, value: c.value, version: version(c.cell_id) };
      return c.formula === null ? cell : { ...cell, formula: c.formula };
    };
    const message =
      op.cells.length === 1
        ? { type: 'cell_update', sheet_id: this.id, room: this.roomId, ...wire(single) }
        : { type: 'cells_update', sheet_id: this.id, room: this.roomId, cells: op.cells.map(wire) };
    try {
      return await this.client.send({ ...message, client_msg_id: op.id });
    } catch (error) {
      if (error instanceof CollabError && error.code === 'VERSION_CONFLICT' && !error.payload.reset) {
        op.conflicted = true;
        const conflicts = error.conflicts ?? [{ cell_id: single.cell_id, current: error.current }];
        for (const { cell_id, current } of conflicts) {
          if (current) this._confirm(cell_id, current, 'conflict');
          const attempted = op.cells.find((/** @type {any} */ c) => c.cell_id === cell_id);
          this.emit('conflict', { sheet_id: this.id, cell_id, attempted: attempted?.value, current, error });
        }
      }
      throw error;
    }
  }

  /**
   * The server took this client out of the sheet's room: every edit not yet acknowledged is refused
   * (its promise rejects with `error`) and the cells show the server's values again, at once.
   * @param {CollabError} error
   */
  _revoke(error) {
    this.revoked = error;
    for (const op of [...this._ops.values()]) this._settle(op);
  }

  /** @param {any} op */
  _settle(op) {
    const settled = this._ops.delete(op.id);
    // What it was made on served only to send it. Kept, each edit would hold the one before it, and
    // a cell whose edits keep overlapping (one always pending) would hold every edit ever made of it.
    op.before.clear();
    for (const { cell_id } of op.cells) {
      if (this._local.get(cell_id)?.op === op) {
        this._local.delete(cell_id);
        this.emit('change', { cell_id, cell: this.get(cell_id), source: 'settled' });
      }
      if (this._last.get(cell_id) === op) this._last.delete(cell_id);
    }
    if (settled) this.client._queueChanged();
  }

  /** A `cell_updated` or `cells_updated` of this sheet. @param {any} message */
  _applyUpdate(message) {
    const cells =
      message.type === 'cells_updated'
        ? message.cells
        : [{ cell_id: message.cell_id, value: message.value, formula: message.formula, version: message.version }];
    const own = message.client_msg_id ? this._pendingOp(message.client_msg_id) : undefined;
    for (const cell of cells) {
      own?.results.set(cell.cell_id, cell.version);
      this._confirm(cell.cell_id, { ...cell, user_id: message.user_id, username: message.username }, 'remote');
    }
  }

  /**
   * The unsettled op with this `client_msg_id`. Looked up by id, not through `_last`/`_local`: those
   * name only a cell's newest edit, and the echo of an older one (replayed on resume) must still
   * record the version it produced, which the next edit of that cell is made on.
   * @param {string} id
   */
  _pendingOp(id) {
    return this._ops.get(id);
  }

  /** Keeps the server's cell when it is newer than what is known. @param {string} cellId @param {any} cell @param {string} source */
  _confirm(cellId, cell, source) {
    const known = this.cells.get(cellId);
    if (known && known.version >= cell.version) return;
    this.cells.set(cellId, {
      value: cell.value,
      formula: cell.formula ?? null,
      version: cell.version,
      user_id: cell.user_id ?? null,
      username: cell.username,
    });
    this.emit('change', { cell_id: cellId, cell: this.get(cellId), source });
  }
}

/**
 * @typedef {object} ClientOptions
 * @property {string} [url] the WebSocket URL; default `/api/v1/ws` on the page's host
 * @property {string} [httpUrl] base of the REST API; default derived from `url`
 * @property {string} [token] the JWT
 * @property {() => (string | Promise<string>)} [getToken] asked for a token before connecting without
 *   one, after a 4401, and on `token_expiring`
 * @property {typeof WebSocket} [WebSocket] the WebSocket class (default: the global one)
 * @property {{initial?: number, max?: number, factor?: number, jitter?: number}} [backoff]
 * @property {boolean} [watchNetwork] follow the browser's online/offline events (default true where they exist)
 * @property {number} [resumeTimeout] ms to wait for a room's resume before going on (default 10000)
 * @property {number} [requestTimeout] ms a `request()` (a join, `load()`, a subscription) waits for its
 *   answer once sent, before it rejects with TIMEOUT (default 15000)
 * @property {number} [connectTimeout] ms from opening a socket to the server's `connected` greeting
 *   before the attempt is given up and retried (default 10000)
 */

export class CollabClient extends Emitter {
  /** @param {ClientOptions} [options] */
  constructor(options = {}) {
    super();
    const location = globalThis.location;
    const defaultUrl = location
      ? `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/ws`
      : undefined;
    this.url = options.url ?? defaultUrl;
    if (!this.url) throw new TypeError('collab-client: `url` is required outside a browser');
    this.httpUrl = options.httpUrl ?? this.url.replace(/^ws/, 'http').replace(/\/api\/v1\/ws.*$/, '');
    this.token = options.token ?? null;
    this.getToken = options.getToken;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.backoff = options.backoff ?? {};
    this.resumeTimeout = options.resumeTimeout ?? 10000;
    this.requestTimeout = options.requestTimeout ?? 15000;
    this.connectTimeout = options.connectTimeout ?? 10000;
    /** 'idle' | 'connecting' | 'connected' | 'ready' | 'reconnecting' | 'offline' | 'closed' */
    this.state = 'idle';
    /** The `connected` greeting of the current connection. @type {any} */
    this.session = null;
    /** @type {Map<string, Room>} */
    this.rooms = new Map();
    /** @type {Map<string, Sheet>} */
    this.sheets = new Map();
    /** Unread notifications by id, from `notifications_subscribed` and live events (direct messages included). @type {Map<string, any>} */
    this.unread = new Map();
    /** Why the client stopped for good (`removed`, `auth_failed`, ...). @type {string | null} */
    this.stopReason = null;
    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._connectTimer = null;
    this._heartbeat = null;
    this._lastHeard = 0;
    this._idCounter = 0;
    this._idPrefix = `c${Math.random().toString(36).slice(2, 8)}`;
    /** Durable messages awaiting their ack, in the order they were sent. @type {Map<string, any>} */
    this._outbox = new Map();
    /** Requests awaiting a reply. @type {Map<string, any>} */
    this._requests = new Map();
    /** @type {any} */
    this._notificationFilters = null;
    /** Subscriptions not yet answered (waiting for a connection, or their reply). */
    this._subscribing = 0;
    /** @type {Map<string, any>} */
    this._ai = new Map();
    /** Ids of messages settled when their room was revoked: the server's late answers are dropped. */
    this._abandoned = new Set();
    this._online = true;
    /** Seconds the last `server_shutdown` asked to wait before reconnecting. @type {number | null} */
    this._reconnectAfter = null;
    /** How often the client was closed: a wait for `getToken()` begun before a close ends with it. */
    this._stops = 0;
    /** The `getToken()` call on its way, shared by whoever needs a token meanwhile. @type {Promise<any> | null} */
    this._tokenFetch = null;
    /** Set while a 4401 waits for a new token to reconnect with: a refresh then has nothing to swap. */
    this._reauthenticating = 0;
    if (options.watchNetwork ?? typeof globalThis.addEventListener === 'function') this._watchNetwork();
  }

  /**
   * How many edits are not yet acknowledged: `set()` and `setRange()` of every sheet, and
   * `cell_update`/`cells_update` sent with `send()`, from when they are made until the server's ack
   * (or refusal) settled them. Queued offline or after the session ended, waiting behind an earlier
   * edit of the same cell, held by a `room_reset`, or sent and unanswered: closing the page would
   * lose each of them. The `queue` event tells every change of it.
   */
  get pendingEdits() {
    const ids = new Set();
    for (const sheet of this.sheets.values()) for (const id of sheet._ops.keys()) ids.add(id);
    for (const [id, entry] of this._outbox) if (EDITS.has(entry.message.type)) ids.add(id);
    return ids.size;
  }

  /** Tells `queue`: what waits for an ack changed (the outbox, or the edits not yet acknowledged). */
  _queueChanged() {
    this.emit('queue', { size: this._outbox.size, edits: this.pendingEdits });
  }

  /** A fresh `client_msg_id`, unique across tabs and reloads. */
  nextId() {
    this._idCounter += 1;
    return `${this._idPrefix}-${Date.now().toString(36)}-${this._idCounter}`;
  }

  /** Opens the connection (again after `close()`); resolves once rooms are resumed. */
  connect() {
    if (this.state === 'closed' || this.state === 'idle') {
      this.stopReason = null;
      this._attempt = 0;
      this._open();
    }
    return this.ready();
  }

  /** Resolves when the client is connected and every room resumed (at once if it is). */
  ready() {
    if (this.state === 'ready') return Promise.resolve(this);
    if (this.state === 'closed') return Promise.reject(new CollabError('CLOSED', `client closed (${this.stopReason})`));
    return new Promise((resolve, reject) => {
      const offReady = this.once('ready', () => {
        offClosed();
        resolve(this);
      });
      const offClosed = this.once('closed', (/** @type {any} */ info) => {
        offReady();
        reject(new CollabError('CLOSED', `client closed (${info.reason})`));
      });
    });
  }

  /** Closes for good; pending sends are rejected. */
  close() {
    this._stop('closed by the application');
    if (this._ws) {
      const ws = this._ws;
      this._detach();
      ws.close(CloseCode.NORMAL, 'client closed');
    }
  }

  // ---- joining rooms ---------------------------------------------------------------------------

  /**
   * Joins a room (and rejoins it after every reconnect, resuming from its last seq).
   * Resolves with the room once its `room_state` arrived.
   * @param {string} roomId
   */
  async join(roomId) {
    let room = this.rooms.get(roomId);
    if (!room) {
      room = new Room(this, roomId);
      this.rooms.set(roomId, room);
      for (const sheet of this.sheets.values()) if (sheet.roomId === roomId) sheet.revoked = null;
    }
    if (this.state === 'ready' && !room.joined) await this._joinRoom(room);
    else await this._roomReady(roomId);
    return room;
  }

  /** Leaves a room and stops rejoining it. @param {string} roomId */
  async leave(roomId) {
    const room = this.rooms.get(roomId);
    this.rooms.delete(roomId);
    if (!room?.joined || this.state !== 'ready') return;
    room.joined = false;
    await this.request(
      { type: 'leave_room', room_id: roomId },
      (/** @type {any} */ m) => m.type === 'room_left' && m.room_id === roomId,
    );
  }

  /** A sheet's model, loaded on first use. @param {string} sheetId @param {{room: string}} options */
  sheet(sheetId, options) {
    let sheet = this.sheets.get(sheetId);
    if (!sheet) {
      sheet = new Sheet(this, sheetId, options.room);
      this.sheets.set(sheetId, sheet);
    }
    return sheet;
  }

  /** @param {string} roomId @returns {Promise<Room>} */
  _roomReady(roomId) {
    const room = this.rooms.get(roomId);
    if (!room) return Promise.reject(new CollabError('ROOM_NOT_FOUND', `not in room ${roomId}`));
    if (room.joined && this.state === 'ready') return Promise.resolve(room);
    return this.ready().then(() => (room.joined ? room : this._joinRoom(room)));
  }

  /**
   * Joins `room` on the current connection, once: a join asked for while one sent on this connection
   * still waits for its answer (a `load()` or a second `join()` meanwhile) waits for that one, rather
   * than sending another `join_room`, whose answer would tell the room joined twice. A join sent on a
   * connection that dropped is not shared: the resume joins the room again on the next one.
   * @param {Room} room @returns {Promise<Room>}
   */
  _joinRoom(room) {
    const ws = this._ws;
    if (ws && room._joining?.ws === ws) return room._joining.promise;
    const promise = this._sendJoin(room);
    const joining = { ws, promise };
    room._joining = joining;
    const done = () => {
      if (room._joining === joining) room._joining = null;
    };
    promise.then(done, done);
    return promise;
  }

  /** @param {Room} room @returns {Promise<Room>} */
  async _sendJoin(room) {
    const resume = room.seq !== null;
    const message = { type: 'join_room', room_id: room.id };
    if (resume) Object.assign(message, { since: room.seq });
    let replayDone;
    if (resume) {
      replayDone = this._waitFor((m) => m.type === 'replay_complete' && m.room_id === room.id, this.resumeTimeout);
      replayDone.catch(() => {}); // awaited below, or never: a join redone by a resume
    }
    let state;
    try {
      state = await this.request(message, (m) => m.type === 'room_state' && m.room_id === room.id);
    } catch (error) {
      // A `since` past the room's seq means the server's history is not the one this client saw.
      if (resume && error instanceof CollabError && error.code === 'VALIDATION_ERROR') {
        room.seq = null;
        const sheets = [...this.sheets.values()].filter((sheet) => sheet.roomId === room.id);
        for (const sheet of sheets) sheet._holdForReset(); // before the resume sends the outbox
        this.emit('room_reset', { room_id: room.id });
        try {
          return await this._sendJoin(room);
        } finally {
          // Not awaited: the reload is a request, answered once the resume is done (or refused, and
          // the held edits refused all the same, when the rejoin failed).
          for (const sheet of sheets) sheet._reloadAfterReset();
        }
      }
      throw error;
    }
    // Sent on a connection that dropped before its answer: the resume joined the room again and told
    // it (`joined`/`resumed`); that join's answer was its own, and this one ended with it.
    if (state === null) return room;
    if (replayDone) {
      const complete = await replayDone.catch(() => null);
      if (complete) room.seq = Math.max(room.seq ?? 0, complete.seq);
    }
    room.joined = true;
    this.emit(resume ? 'resumed' : 'joined', { room_id: room.id, seq: room.seq });
    return room;
  }

  // ---- sending ---------------------------------------------------------------------------------

  /**
   * Sends a durable message. Resolves with its `ack` (`{client_msg_id, room_id?, seq?}`), rejects
   * with the CollabError that echoes its `client_msg_id`. Sent while offline, it waits in order and
   * goes out on reconnect; one sent but not acknowledged when the connection dropped goes out again
   * with the same `client_msg_id`, which the server never applies twice.
   * @param {Record<string, any>} message
   */
  send(message) {
    const msg = { ...message };
    if (!msg.client_msg_id) msg.client_msg_id = this.nextId();
    if (this.state === 'closed') return Promise.reject(new CollabError('CLOSED', 'the client is closed'));
    return new Promise((resolve, reject) => {
      const entry = { message: msg, resolve, reject, retries: 0, timer: null };
      this._outbox.set(msg.client_msg_id, entry);
      this._queueChanged();
      if (this.state === 'ready') this._transmit(msg);
    });
  }

  /** Sends a volatile message now, or drops it when not connected; returns whether it went out. @param {Record<string, any>} message */
  sendVolatile(message) {
    if (this.state !== 'ready' || !this._ws) return false;
    return this._transmit(message);
  }

  /**
   * Sends a read (no ack) and resolves with the first message `match` accepts; rejects with an
   * error echoing its `client_msg_id`. Waits for the connection when offline; one whose answer was
   * lost with a dropped connection is sent again once the next one is ready (a `join_room` is
   * redone by the resume itself, and resolves with null once that join is done; a `leave_room` is
   * done: the room is not rejoined). `timeout` (default `requestTimeout`) counts from when it is
   * sent: not while it waits for a connection (or a new token), nor between connections.
   * @param {Record<string, any>} message @param {(m: any) => boolean} match @param {number} [timeout]
   */
  async request(message, match, timeout = this.requestTimeout) {
    if (this.state !== 'ready' && !(message.type === 'join_room' && this.state === 'connected')) {
      await this.ready();
    }
    const id = message.client_msg_id ?? this.nextId();
    const wire = { ...message, client_msg_id: id };
    return new Promise((resolve, reject) => {
      /** @type {any} */
      let timer = null;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          this._requests.delete(id);
          reject(new CollabError('TIMEOUT', `no answer to ${message.type}`));
        }, timeout);
      };
      this._requests.set(id, {
        match,
        message: wire,
        arm,
        pause: () => clearTimeout(timer),
        resolve: (/** @type {any} */ m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (/** @type {any} */ e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      if (this._transmit(wire)) arm(); // else it waits for the resume, which sends it
    });
  }

  /** @param {(m: any) => boolean} match @param {number} timeout @returns {Promise<any>} */
  _waitFor(match, timeout) {
    const id = `wait-${this.nextId()}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._requests.delete(id);
        reject(new CollabError('TIMEOUT', 'timed out'));
      }, timeout);
      this._requests.set(id, {
        match,
        passive: true,
        resolve: (/** @type {any} */ m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (/** @type {any} */ e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** @param {Record<string, any>} message */
  _transmit(message) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(message));
    return true;
  }

  // ---- features --------------------------------------------------------------------------------

  /**
   * Sets this user's status; once acknowledged, their own entry in every room has it too. The server
   * tells a status to the user's other connections and to the rooms' members, never back to the
   * connection that set it, so without this the rooms here would keep the status from before.
   * @param {'online' | 'away' | 'busy'} status
   */
  async setStatus(status) {
    const ack = await this.send({ type: 'status_update', status });
    const userId = this.session?.user?.user_id;
    if (userId) for (const room of this.rooms.values()) room._apply({ type: 'user_status_changed', user_id: userId, status });
    return ack;
  }

  /**
   * Subscribes to notifications (again after every reconnect); resolves with `notifications_subscribed`.
   * @param {{categories?: string[] | null, modules?: string[] | null, priorities?: string[] | null}} [filters]
   */
  async subscribeNotifications(filters = {}) {
    this._notificationFilters = filters;
    return this._subscribe();
  }

  async _subscribe() {
    // The reply's `unread` is the whole list as of the subscription, and live events follow it; what
    // was kept from before (a resubscribe after a reconnect) may have been read meanwhile, from another
    // tab or over REST, and its `notification_read` went to no socket of this client. Those kept are
    // dropped unless the reply still lists them (ones arriving live meanwhile are new, so kept).
    this._subscribing += 1;
    try {
      if (this.state !== 'ready') await this.ready();
      const known = [...this.unread.keys()];
      const reply = await this.request(
        { type: 'subscribe_notifications', ...this._notificationFilters },
        (m) => m.type === 'notifications_subscribed',
      );
      const listed = new Set((reply.unread ?? []).map((/** @type {any} */ n) => n.id));
      for (const id of known) if (!listed.has(id)) this.unread.delete(id);
      for (const n of reply.unread ?? []) this.unread.set(n.id, n);
      this.emit('notifications', [...this.unread.values()]);
      return reply;
    } finally {
      this._subscribing -= 1;
    }
  }

  /** @param {string} notificationId */
  markNotificationRead(notificationId) {
    return this.send({ type: 'notification_read', notification_id: notificationId });
  }

  /**
   * Asks for an AI analysis of a sheet; `onEvent` gets every `ai_event` of it as it streams.
   * @param {{query: string, sheetId: string, context?: Record<string, any> | null, requestId?: string}} params
   * @param {(event: any) => void} [onEvent]
   */
  requestAi(params, onEvent) {
    const requestId = params.requestId ?? `ai-${this.nextId()}`;
    const message = {
      type: 'ai_request',
      request_id: requestId,
      query: params.query,
      sheet_id: params.sheetId,
      context: params.context ?? null,
      client_msg_id: this.nextId(),
    };
    /** The last `seq` of its events seen: `ai_event`s at or below it are dropped. @type {any} */
    const run = { requestId, onEvent, message, seq: null };
    run.result = new Promise((resolve, reject) => Object.assign(run, { resolve, reject }));
    run.result.catch(() => {});
    this._ai.set(requestId, run);
    this._askAi(run);
    return { requestId, result: run.result, cancel: () => this.send({ type: 'ai_cancel', request_id: requestId }) };
  }

  /**
   * Sends a run's `ai_request`; a refusal ends the run. Sent again, with its `request_id`, after each
   * reconnect until its answer comes (see `_resume`): the server runs it once, and brings the new
   * connection up to date on it (its answer if it ended meanwhile, else its latest progress).
   * @param {any} run
   */
  _askAi(run) {
    this.send(run.message).catch((error) => {
      if (this._ai.get(run.requestId) !== run) return; // ended meanwhile (its answer came first)
      this._ai.delete(run.requestId);
      run.reject(error);
    });
  }

  /**
   * Uploads a file over REST (`PUT /api/v1/files/{id}`) after announcing it on the socket, so the
   * user's other tabs see it start, progress and complete.
   * @param {Blob & {name?: string}} file
   * @param {{fileId?: string, filename?: string, roomId?: string, onProgress?: (p: {loaded: number, total: number}) => void}} [options]
   */
  async uploadFile(file, options = {}) {
    const fileId = options.fileId ?? `f-${this.nextId()}`;
    const filename = options.filename ?? file.name ?? fileId;
    await this.send({
      type: 'file_upload_start',
      file_id: fileId,
      filename,
      file_size: file.size,
      mime_type: file.type ?? '',
    });
    const query = options.roomId ? `?room_id=${encodeURIComponent(options.roomId)}` : '';
    const url = `${this.httpUrl}/api/v1/files/${encodeURIComponent(fileId)}${query}`;
    if (typeof XMLHttpRequest === 'function') return this._xhrUpload(url, file, options.onProgress);
    const response = await fetch(url, {
      method: 'PUT',
      body: file,
      headers: { Authorization: `Bearer ${this.token}`, ...(file.type ? { 'Content-Type': file.type } : {}) },
    });
    options.onProgress?.({ loaded: file.size, total: file.size });
    return this._json(response);
  }

  /** @param {string} url @param {Blob} file @param {((p: {loaded: number, total: number}) => void) | undefined} onProgress */
  _xhrUpload(url, file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', url);
      xhr.setRequestHeader('Authorization', `Bearer ${this.token}`);
      xhr.upload.onprogress = (e) => onProgress?.({ loaded: e.loaded, total: e.total || file.size });
      xhr.onload = () => {
        let body = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          // not JSON: keep the empty body
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else reject(httpError(xhr.status, body));
      };
      xhr.onerror = () => reject(new CollabError('NETWORK_ERROR', 'upload failed'));
      xhr.send(file);
    });
  }

  /**
   * Calls the REST API with this client's token; resolves with the JSON body.
   * @param {string} path e.g. `/api/v1/ws/stats` @param {{method?: string, body?: any, raw?: boolean}} [init]
   */
  async rest(path, init = {}) {
    if (!this.token && this.getToken) this.token = await this._fetchToken();
    const headers = /** @type {Record<string, string>} */ ({ Authorization: `Bearer ${this.token}` });
    if (init.body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(`${this.httpUrl}${path}`, {
      method: init.method ?? 'GET',
      headers,
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    if (init.raw) {
      if (!response.ok) throw httpError(response.status, await response.json().catch(() => ({})));
      return response;
    }
    return this._json(response);
  }

  /** @param {Response} response */
  async _json(response) {
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw httpError(response.status, body);
    return body;
  }

  // ---- the connection --------------------------------------------------------------------------

  async _open() {
    this._setState(this._attempt === 0 && this.state !== 'reconnecting' ? 'connecting' : 'reconnecting');
    const stops = this._stops;
    if (!this.token && this.getToken) {
      let token;
      try {
        token = await this._fetchToken();
      } catch (error) {
        if (this._stops === stops) this._stop('auth_failed', error);
        return;
      }
      // Closed while the token was on its way (and perhaps connected again, which opens its own socket).
      if (this._stops !== stops) return;
      this.token = token;
    }
    if (this.state === 'closed') return;
    let ws;
    try {
      ws = new this.WebSocket(this.url, ['bearer', this.token ?? '']);
    } catch (error) {
      this._lost(CloseCode.ABNORMAL, String(error));
      return;
    }
    this._ws = ws;
    // A handshake can hang (a half-open TCP connection, a proxy that accepted and went quiet) and a
    // socket stuck in CONNECTING never closes by itself: without this the client would wait forever.
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (this._ws === ws) this._drop('no greeting from the server');
    }, this.connectTimeout);
    ws.onmessage = (/** @type {MessageEvent} */ event) => this._onFrame(event.data);
    ws.onclose = (/** @type {CloseEvent} */ event) => {
      if (this._ws !== ws) return;
      this._detach();
      this._lost(event.code, event.reason);
    };
    ws.onerror = () => {};
  }

  _detach() {
    const ws = this._ws;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = null;
    }
    this._ws = null;
    clearTimeout(this._connectTimer);
    clearInterval(this._heartbeat);
    this._heartbeat = null;
    // Requests sent on this socket wait for the next one (see `_resume`), like sends do, and their
    // timeouts with them: a getToken() that takes minutes makes none of them fail.
    for (const request of this._requests.values()) request.pause?.();
    for (const room of this.rooms.values()) {
      room.joined = false;
      // Typing is volatile: a stop sent while this client is away is never replayed, and `room_state`
      // does not carry who types. An indicator kept across the drop could stay for ever.
      if (room.typing.size) {
        room.typing.clear();
        room.emit('typing', room.typing);
      }
    }
  }

  /** @param {string} data */
  _onFrame(data) {
    this._lastHeard = Date.now();
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    this._dispatch(message);
  }

  /** @param {any} message */
  _dispatch(message) {
    const { type } = message;
    if (type === 'connected') {
      this.session = message;
      clearTimeout(this._connectTimer);
      this._attempt = 0;
      this._setState('connected');
      this._startHeartbeat(message.heartbeat);
      this._resume();
      this.emit('connected', message);
      return;
    }
    // One of its own AI requests' events seen already (or older than one seen) is dropped too.
    if (type === 'ai_event' && typeof message.seq === 'number') {
      const run = this._ai.get(message.request_id);
      if (run && run.seq !== null && message.seq <= run.seq) return;
    }
    // Room events already applied (a replay overlapping what this client saw) are dropped here.
    if (message.room_id && typeof message.seq === 'number' && !NOT_ROOM_EVENTS.has(type)) {
      const room = this.rooms.get(message.room_id);
      if (room && room.seq !== null && message.seq <= room.seq) return;
      if (room) room.seq = message.seq;
    }
    switch (type) {
      case 'ack':
        this._abandoned.delete(message.client_msg_id);
        this._settleOutbox(message.client_msg_id, (entry) => entry.resolve(message));
        break;
      case 'error':
        this._onError(message);
        break;
      case 'room_state': {
        const room = this.rooms.get(message.room_id);
        if (room) {
          if (room.seq === null) room.seq = message.seq; // a first join: the baseline of what follows
          room._applyState(message);
        }
        break;
      }
      case 'cell_updated':
      case 'cells_updated':
        this.sheets.get(message.sheet_id)?._applyUpdate(message);
        break;
      case 'user_joined':
      case 'user_left':
        this.rooms.get(message.room_id)?._apply(message);
        break;
      case 'room_left':
        // Only a revoke drops a room here: one that answers a `leave_room` this client sent finds
        // its room forgotten by `leave()` already, or joined again since (a leave not awaited).
        if (revokesRoom(message) && this.rooms.has(message.room_id)) this._roomRevoked(message);
        break;
      case 'cursor_moved':
      case 'user_typing_start':
      case 'user_typing_stop':
        this.rooms.get(message.room)?._apply(message);
        break;
      case 'user_status_changed':
        for (const room of this.rooms.values()) room._apply(message);
        break;
      case 'token_expiring':
        this._refreshToken(message);
        break;
      case 'server_shutdown':
        // docs/protocol.md: reconnect after `reconnect_after` seconds when given (the close follows).
        this._reconnectAfter = typeof message.reconnect_after === 'number' ? message.reconnect_after : null;
        break;
      case 'notification_event':
        this._onNotification(message);
        break;
      case 'ai_event':
        this._onAi(message);
        break;
      default:
        // An admin's direct message (a notify) is in the user's inbox too, as a notification: the
        // server gives it a `notification_id`, and it names no room. A room broadcast names its room,
        // and may have been posted with a `notification_id` of its own that no inbox holds.
        if (typeof message.notification_id === 'string' && message.room_id === undefined) this._onDirectMessage(message);
        break;
    }
    for (const [id, request] of this._requests) {
      if (request.match(message)) {
        this._requests.delete(id);
        request.resolve(message);
      }
    }
    this.emit(type, message);
    this.emit('message', message);
  }

  /**
   * The server took this connection out of a room it did not leave: forget the room (it is not
   * rejoined on reconnect), settle what waits for it, and tell the app (`room_revoked`).
   * @param {any} message the `room_left`
   */
  _roomRevoked(message) {
    const roomId = message.room_id;
    const room = /** @type {Room} */ (this.rooms.get(roomId));
    this.rooms.delete(roomId);
    room.joined = false;
    room.users.clear();
    room.typing.clear();
    const error = new CollabError('PERMISSION_DENIED', `no longer allowed in room ${roomId}`, {
      room_id: roomId,
      reason: 'revoked',
    });
    const inRoom = (/** @type {any} */ m) =>
      (m.room ?? m.room_id ?? (m.sheet_id ? this.sheets.get(m.sheet_id)?.roomId : undefined)) === roomId;
    for (const sheet of this.sheets.values()) if (sheet.roomId === roomId) sheet._revoke(error);
    // Sent after the new token took effect, these are refused by the server; its answers, which
    // come later, are dropped (see `_onError`) rather than reported a second time.
    for (const [id, entry] of [...this._outbox]) {
      if (!inRoom(entry.message)) continue;
      this._abandoned.add(id);
      this._settleOutbox(id, (e) => e.reject(error));
    }
    for (const [id, request] of [...this._requests]) {
      if (!request.message || !inRoom(request.message)) continue;
      this._abandoned.add(id);
      this._requests.delete(id);
      request.reject(error);
    }
    room.emit('presence', room.members);
    room.emit('typing', room.typing);
    room.emit('revoked', { room_id: roomId, error });
    this.emit('room_revoked', { room_id: roomId, seq: message.seq, error });
  }

  /** @param {any} message */
  _onError(message) {
    const error = new CollabError(message.code, message.error, message);
    const id = message.client_msg_id;
    if (id && this._abandoned.delete(id)) return; // already settled when its room was revoked
    const request = id && this._requests.get(id);
    if (request) {
      this._requests.delete(id);
      request.reject(error);
      return;
    }
    const entry = id && this._outbox.get(id);
    if (entry) {
      const retryable = message.code === 'RATE_LIMIT_EXCEEDED' || (message.code === 'INTERNAL_ERROR' && message.retryable);
      if (retryable && RETRYABLE.has(message.code) && entry.retries < MAX_RETRIES) {
        entry.retries += 1;
        const wait = message.retry_after ? message.retry_after * 1000 : backoffDelay(entry.retries, this.backoff);
        entry.timer = setTimeout(() => this.state === 'ready' && this._transmit(entry.message), wait);
        return;
      }
      this._settleOutbox(id, (e) => e.reject(error));
      return;
    }
    if (message.request_id && this._ai.has(message.request_id)) {
      this._ai.get(message.request_id).reject(error);
      this._ai.delete(message.request_id);
    }
    this.emit('server_error', error);
  }

  /** @param {string} id @param {(entry: any) => void} settle */
  _settleOutbox(id, settle) {
    const entry = this._outbox.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this._outbox.delete(id);
    settle(entry);
    this._queueChanged();
  }

  /** Rejoins every room (resuming from its seq), resubscribes, then sends what waited. */
  async _resume() {
    const ws = this._ws;
    // Joins sent on a connection that dropped before their answer: every room is joined again below,
    // and each of those ends as its room's new join does (resolved with null), rather than taking the
    // new join's answer for its own and telling the room joined a second time.
    const interrupted = [...this._requests].filter(([, request]) => request.message?.type === 'join_room');
    for (const [id] of interrupted) this._requests.delete(id);
    const rooms = [...this.rooms.values()];
    const joins = rooms.map((room) => this._joinRoom(room));
    for (const [, request] of interrupted) {
      const roomId = request.message.room_id;
      const i = rooms.findIndex((room) => room.id === roomId);
      const join = i < 0 ? Promise.reject(new CollabError('ROOM_NOT_FOUND', `not in room ${roomId}`)) : joins[i];
      join.then(
        () => request.resolve(null),
        (/** @type {any} */ error) => request.reject(error),
      );
    }
    const results = await Promise.allSettled(joins);
    if (this._ws !== ws || !ws) return; // dropped again meanwhile: the next connection resumes
    results.forEach((result, i) => {
      if (result.status === 'rejected') {
        this.rooms.delete(rooms[i].id);
        this.emit('room_error', { room_id: rooms[i].id, error: result.reason });
      }
    });
    this._setState('ready');
    for (const [id, request] of [...this._requests]) {
      const type = request.message?.type;
      if (!type || type === 'join_room') continue; // passive waits have no message; joins were just redone
      if (type === 'leave_room') {
        this._requests.delete(id);
        request.resolve(null);
        continue;
      }
      if (this._transmit(request.message)) request.arm();
    }
    for (const entry of this._outbox.values()) this._transmit(entry.message);
    // AI requests acknowledged on an earlier connection whose answer has not come: the steps published
    // while no socket was open never reach this one, so each is asked again for them (those never
    // acknowledged were just sent again with the outbox).
    for (const run of this._ai.values()) if (!this._outbox.has(run.message.client_msg_id)) this._askAi(run);
    // Resubscribes, unless a subscription still waits: its answer lost with the connection (sent
    // again above) or asked for while disconnected (sent once this is ready). Sent once more, it
    // would be answered twice, and the first answer settles both.
    if (this._notificationFilters && !this._subscribing) {
      this._subscribe().catch((error) => this.emit('server_error', error));
    }
    this.emit('ready', this);
  }

  /** @param {any} heartbeat */
  _startHeartbeat(heartbeat) {
    const interval = (heartbeat?.interval ?? 25) * 1000;
    const timeout = (heartbeat?.timeout ?? 60) * 1000;
    clearInterval(this._heartbeat);
    this._heartbeat = setInterval(() => {
      const quiet = Date.now() - this._lastHeard;
      if (quiet > interval + timeout) this._drop('no answer from the server');
      else if (quiet > interval) this._transmit({ type: 'ping' });
    }, Math.min(interval, 5000));
  }

  /** Gives up on the current socket (it is dead or the network is gone) and reconnects. @param {string} reason */
  _drop(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._detach();
    try {
      ws.close(4000, reason.slice(0, 100));
    } catch {
      // already closing
    }
    this._lost(CloseCode.ABNORMAL, reason);
  }

  /** @param {number} code @param {string} reason */
  async _lost(code, reason) {
    if (this.state === 'closed') return;
    const policy = reconnectPolicy(code);
    const after = this._reconnectAfter; // for this close only
    this._reconnectAfter = null;
    const info = { code, reason, policy };
    if (policy === 'stop' || (policy === 'token' && !this.getToken)) {
      // `disconnected` comes once the state is `closed`, before the sends are rejected and `closed`.
      const why = policy === 'token' ? 'auth_failed' : code === CloseCode.REMOVED ? 'removed' : `closed (${code})`;
      this._stop(why, { code, reason }, () => this.emit('disconnected', info));
      return;
    }
    // The state says the connection is down before `disconnected` tells it: `offline` until the
    // network is back, else `reconnecting` (also while a 4401 waits for a new token: not ready while
    // no token can reconnect it, as a getToken() that asks a person may take minutes, and meanwhile
    // sends wait in the queue and `ready()` waits too).
    this._setState(policy !== 'token' && !this._online ? 'offline' : 'reconnecting');
    const stops = this._stops;
    this.emit('disconnected', info);
    if (this._stops !== stops) return; // a listener closed the client
    if (policy === 'token') {
      const old = this.token;
      let fresh = null;
      this._reauthenticating += 1;
      try {
        // A refresh begun by `token_expiring` may still wait for the token: this waits for it too.
        fresh = await this._fetchToken();
      } catch {
        fresh = null;
      } finally {
        this._reauthenticating -= 1;
      }
      // `close()` while the token was on its way: the client stays closed (or, if `connect()` followed,
      // that connect opens the socket, not this).
      if (this._stops !== stops) return;
      if (!fresh || fresh === old) {
        this._stop('auth_failed', { code, reason });
        return;
      }
      this.token = fresh;
      // At once the first time (a token that expired on an open connection); after that the new
      // tokens were refused too (a clock skew, a rotated secret): back off, never a tight loop.
      this._schedule(this._attempt === 0 ? 0 : backoffDelay(this._attempt, this.backoff));
      return;
    }
    if (!this._online) return; // `offline`: the `online` event reconnects
    if (policy === 'now' && after) {
      // Not all at once: spread the node's clients over up to half as long again.
      const { jitter = 0.5 } = this.backoff;
      this._schedule(Math.round(after * 1000 * (1 + jitter * Math.random())));
      return;
    }
    this._schedule(policy === 'now' && this._attempt === 0 ? 0 : backoffDelay(this._attempt, this.backoff));
  }

  /** @param {number} delay */
  _schedule(delay) {
    clearTimeout(this._timer);
    this._setState('reconnecting');
    this.emit('reconnecting', { attempt: this._attempt, delay });
    this._attempt += 1;
    this._timer = setTimeout(() => this._open(), delay);
  }

  /** @param {string} reason @param {any} [detail] @param {() => void} [whenClosed] told once the state is `closed` */
  _stop(reason, detail, whenClosed) {
    this._stops += 1;
    clearTimeout(this._timer);
    clearTimeout(this._connectTimer);
    this.stopReason = reason;
    this._setState('closed');
    whenClosed?.();
    const error = new CollabError('CLOSED', `client closed: ${reason}`, detail ?? {});
    for (const id of [...this._outbox.keys()]) this._settleOutbox(id, (e) => e.reject(error));
    for (const [id, request] of this._requests) {
      this._requests.delete(id);
      request.reject(error);
    }
    if (reason === 'removed') this.emit('removed', detail);
    if (reason === 'auth_failed') this.emit('auth_failed', detail);
    this.emit('closed', { reason, detail });
  }

  /**
   * Asks `getToken()` for a token and swaps it in on the open connection (`refresh_token`), as a
   * `token_expiring` does; resolves with `token_refreshed`, or null when getToken() has no new one,
   * or when the token expired (4401) while it was on its way: then that token reconnects the client
   * instead. Rejects with the server's error (AUTHENTICATION_FAILED: a bad token, or another user's)
   * and emits `token_refresh_failed`; the connection keeps its old token until that expires.
   */
  async refreshToken() {
    if (!this.getToken) return null;
    try {
      const token = await this._fetchToken();
      if (!token || token === this.token || this._reauthenticating) return null;
      const reply = await this.request({ type: 'refresh_token', token }, (m) => m.type === 'token_refreshed');
      this.token = token;
      this.emit('token_refreshed', reply);
      return reply;
    } catch (error) {
      this.emit('token_refresh_failed', error);
      throw error;
    }
  }

  /**
   * `getToken()`, asked once at a time: whoever needs a token while one is on its way (a 4401 during
   * the refresh begun by `token_expiring`, a `refreshToken()` while the client waits to reconnect)
   * waits for that one. A provider that asks a person must not be asked twice at once.
   * @returns {Promise<string | null | undefined>}
   */
  _fetchToken() {
    if (!this._tokenFetch) {
      const fetching = Promise.resolve()
        .then(() => this.getToken?.())
        .finally(() => {
          if (this._tokenFetch === fetching) this._tokenFetch = null;
        });
      this._tokenFetch = fetching;
    }
    return this._tokenFetch;
  }

  /** @param {any} message */
  async _refreshToken(message) {
    try {
      await this.refreshToken();
    } catch (error) {
      this.emit('server_error', error);
    }
    void message;
  }

  /** @param {any} message */
  _onNotification(message) {
    const n = message.notification ?? {};
    if (message.event_type === 'notification_read') this.unread.delete(n.id);
    else if (n.id && !n.read) this.unread.set(n.id, n);
    this.emit('notifications', [...this.unread.values()]);
  }

  /**
   * A direct message as it arrives is unread, as `notifications_subscribed` would list it (with its
   * posted `title`, or its `type`, and category `direct_message` unless it names one): without it
   * here, `unread` would count it only after the next subscription, and it could not be marked read
   * meanwhile. Kept only while subscribed, and as the subscription's filters would have it.
   * @param {any} message
   */
  _onDirectMessage(message) {
    const filters = this._notificationFilters;
    if (!filters) return;
    const n = {
      id: message.notification_id,
      title: message.title || message.type || null,
      message: typeof message.message === 'string' ? message.message : null,
      category: message.category || 'direct_message',
      priority: message.priority ?? null,
      module_name: message.module_name ?? null,
    };
    const matches = (/** @type {string[] | null | undefined} */ tags, /** @type {any} */ value) => !tags?.length || tags.includes(value);
    if (!matches(filters.categories, n.category) || !matches(filters.modules, n.module_name) || !matches(filters.priorities, n.priority)) return;
    this.unread.set(n.id, n);
    this.emit('notifications', [...this.unread.values()]);
  }

  /** @param {any} message */
  _onAi(message) {
    const run = this._ai.get(message.request_id);
    if (!run) return;
    if (typeof message.seq === 'number') run.seq = message.seq;
    run.onEvent?.(message);
    if (message.event_type === 'ai_complete') run.resolve(message.data);
    if (message.event_type === 'ai_error') run.reject(new CollabError(message.data?.code ?? 'AI_ERROR', message.data?.error ?? 'AI request failed', message.data));
    if (message.event_type === 'ai_complete' || message.event_type === 'ai_error') this._ai.delete(message.request_id);
  }

  /** @param {string} state */
  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this.emit('state', { state, previous });
  }

  _watchNetwork() {
    if (globalThis.navigator && globalThis.navigator.onLine === false) this._online = false;
    globalThis.addEventListener('offline', () => {
      this._online = false;
      if (this.state === 'closed' || this.state === 'idle') return;
      if (this._ws) this._drop('the network went offline');
      else this._setState('offline');
    });
    globalThis.addEventListener('online', () => {
      this._online = true;
      if (this.state === 'offline' || this.state === 'reconnecting') {
        this._attempt = 0;
        this._schedule(0);
      }
    });
  }
}

/** @param {number} status @param {any} body */
function httpError(status, body) {
  return new CollabError(body?.code ?? `HTTP_${status}`, body?.error ?? `HTTP ${status}`, { ...body, status });
}
