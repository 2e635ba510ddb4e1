// The live sheet: one room, one sheet, everyone in it. Everything goes through collab-client; this
// file only connects its events to the page.
import { CollabClient } from '/client/collab-client.js';
import { TokenSession, askForToken, claimsOf, colourFor, el, fill, initials, roomColours, takeToken } from '/static/shared/session.js';
import { cellName, parseCell, quote } from './cells.js';
import { SheetGrid } from './grid.js';
import { activity, banner, quoted, toast } from './notices.js';
import { wireAi, wireFiles, wireNotifications } from './panels.js';
import { UndoHistory } from './undo.js';

const params = new URLSearchParams(location.search);
const roomId = params.get('room') || 'demo';
const sheetId = params.get('sheet') || 'budget';
const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const STATE_LABELS = {
  connecting: ['Connecting…', 'warn'],
  connected: ['Joining…', 'warn'],
  ready: ['Live', 'ok'],
  reconnecting: ['Reconnecting…', 'warn'],
  offline: ['Offline', ''],
  closed: ['Disconnected', 'bad'],
};
/** Server messages the page handles itself; any other with a title or text is an announcement. */
const HANDLED = new Set([
  'connected', 'ack', 'error', 'pong', 'room_state', 'replay_complete', 'user_joined', 'user_left', 'room_left',
  'cell_updated', 'cells_updated', 'cursor_moved', 'user_typing_start', 'user_typing_stop', 'user_status_changed',
  'ai_event', 'notifications_subscribed', 'notification_event', 'file_upload_started', 'file_upload_progress',
  'file_upload_complete', 'file_upload_failed', 'server_shutdown', 'sheet_state', 'token_expiring', 'token_refreshed',
]);

const token = takeToken();
if (!token) {
  askForToken('This page needs a token to connect.', 'collab token --sub alice --username alice --role editor');
} else {
  start(token);
}

/** @param {string} token */
async function start(token) {
  const claims = claimsOf(token) ?? {};
  const me = { id: claims.sub ?? 'me', name: claims.username ?? claims.sub ?? 'me' };
  // Each person's colour among the room's people (no two alike while colours are spare), as everyone
  // in the room sees it; by id alone until the room is known.
  /** @type {Map<string, string>} */
  let colours = new Map();
  const colourOf = (/** @type {string} */ userId) => colours.get(userId) ?? colourFor(userId);
  $('room-name').textContent = roomId;
  $('sheet-name').textContent = sheetId;
  document.title = `${sheetId} · ${roomId} · collab-engine`;
  fill($('me'), avatar(me.id, me.name), el('span', {}, me.name));

  // There is no sign-in endpoint: a new token comes from the person, pasted into the session banner
  // (TokenSession answers the client's getToken()). Meanwhile the client keeps unsent edits queued,
  // and the banner says how many.
  const session = new TokenSession({
    banner: $('banner'),
    me,
    mint: `collab token --sub ${me.id} --role editor`,
    kept: () => {
      const queued = unsentEdits();
      return queued
        ? `${queued} unsent edit${queued === 1 ? ' is' : 's are'} kept in this tab and will be sent once you paste a new token; closing or reloading the tab discards ${queued === 1 ? 'it' : 'them'}.`
        : 'Paste a new token to reconnect.';
    },
    onChange: () => {
      if (session.ended) activity(session.note || 'Your session ended: waiting for a new token', '#d92d20');
      showState();
      renderPresence();
    },
  });
  const client = new CollabClient({ token, getToken: session.getToken });
  session.attach(client);
  /**
   * Edits not yet acknowledged (queued, waiting behind an earlier edit of the same cell, or sent and
   * unanswered): closing the tab would lose them. The client's `queue` event tells when this changes.
   */
  const unsentEdits = () => client.pendingEdits;
  // Closing or reloading the tab discards them: the browser asks first, and only then.
  window.addEventListener('beforeunload', (event) => {
    if (!unsentEdits() && !grid.hasUnsavedText()) return;
    event.preventDefault();
    event.returnValue = '';
  });
  const grid = new SheetGrid({
    table: /** @type {HTMLTableElement} */ ($('grid')),
    scroller: $('grid-scroller'),
    overlay: $('overlay'),
    formula: /** @type {HTMLTextAreaElement} */ ($('formula')),
    cellName: $('cell-name'),
    colour: colourOf(me.id),
  });
  const sheet = client.sheet(sheetId, { room: roomId });
  grid.lookup = (id) => sheet.get(id);
  // For a person debugging in the console: the client and the sheet model.
  Object.assign(window, { collab: { client, sheet, grid } });

  // --- connection state -----------------------------------------------------------------------
  const pill = $('connection');
  /** Set once the server took this person out of the room (a new token that does not allow it). */
  let revoked = false;
  const showState = () => {
    if (session.ended && client.state !== 'ready') {
      const queued = unsentEdits();
      pill.textContent = `Session ended${queued ? ` · ${queued} edit${queued === 1 ? '' : 's'} queued` : ''}`;
      pill.className = 'pill bad';
      pill.dataset.state = 'session-ended';
      pill.dataset.queued = String(queued);
      return;
    }
    if (revoked) {
      pill.textContent = 'No access';
      pill.className = 'pill bad';
      pill.dataset.state = 'revoked';
      return;
    }
    const [label, tone] = STATE_LABELS[/** @type {keyof typeof STATE_LABELS} */ (client.state)] ?? [client.state, ''];
    const queued = unsentEdits();
    pill.textContent = queued && client.state !== 'ready' ? `${label} · ${queued} edit${queued === 1 ? '' : 's'} queued` : label;
    pill.className = `pill ${tone}`;
    pill.dataset.state = client.state;
    pill.dataset.queued = String(queued);
  };
  client.on('state', showState);
  client.on('queue', showState);
  client.on('queue', () => session.refresh()); // the session banner says how many edits are kept
  client.on('removed', () => {
    banner('An administrator removed this connection. Your unsent edits were discarded.', 'Reconnect', () => {
      $('banner').hidden = true;
      client.connect().then(() => sheet.load());
    });
    pill.textContent = 'Removed';
    activity('You were removed by an administrator', '#d92d20');
  });
  client.on('auth_failed', () => askForToken('Your token was refused or has expired.', 'collab token --sub ' + me.id + ' --role editor'));
  client.on('server_shutdown', () => activity('The server is restarting; reconnecting…'));
  client.on('room_reset', ({ room_id }) => {
    if (room_id !== roomId) return;
    // The server's history of the room is not the one this page saw: the client reloads the sheet.
    toast(`The server's history of ${roomId} is not the one this page saw (the server was restored or reset). The sheet was reloaded and shows the server's values.`, 'info');
    activity(`${roomId} was reset on the server: the sheet was reloaded`, '#d92d20');
  });
  // A viewer may look, not edit: every edit, analysis or upload would be refused, so none is offered.
  // The roles are the token's: one refreshed or pasted later may give or take editing.
  let viewOnly = false;
  const followRoles = () => {
    const roles = /** @type {string[]} */ (claimsOf(client.token ?? token)?.roles ?? ['editor']);
    const was = viewOnly;
    viewOnly = !roles.includes('editor') && !roles.includes('admin');
    if (revoked || viewOnly === was) return; // a revoked room allows nothing, whatever the roles
    grid.readOnly = viewOnly;
    if (viewOnly) document.body.dataset.access = 'view';
    else delete document.body.dataset.access;
    $('view-only').hidden = !viewOnly;
    // An analysis running keeps its button disabled until it ends (panels.js), as for an editor.
    /** @type {HTMLButtonElement} */ ($('ai-run')).disabled = viewOnly;
    /** @type {HTMLInputElement} */ ($('upload-input')).disabled = viewOnly;
  };
  followRoles();
  client.on('token_refreshed', followRoles);
  client.on('state', () => client.state === 'ready' && followRoles());
  client.on('room_revoked', ({ room_id }) => {
    if (room_id !== roomId) return;
    // The token the page now uses does not include this room: the server took the person out of it.
    // The cells stay on screen as they were, read-only; nothing typed here could be saved.
    revoked = true;
    grid.readOnly = true;
    document.body.dataset.access = 'revoked';
    // The room's other actions would be refused too: an analysis of its sheet, an upload shared with it.
    /** @type {HTMLButtonElement} */ ($('ai-run')).disabled = true;
    /** @type {HTMLInputElement} */ ($('upload-input')).disabled = true;
    showState();
    banner(
      `You no longer have access to ${roomId}: your new token does not include this room. The sheet shows the cells as they were when access ended, and changes are no longer saved.`,
      'Use another token',
      () => askForToken(`Your token no longer gives access to ${roomId}.`, `collab token --sub ${me.id} --role editor --rooms '${roomId}'`),
    );
    activity(`You lost access to ${roomId}`, '#d92d20');
  });
  client.on('resumed', ({ room_id, seq }) => activity(`Back online: ${room_id} resumed after seq ${seq}`));
  // The others saw this person leave with the connection and join again, with no cursor: once the
  // rooms are resumed (`ready`, when a cursor can be sent), where they are is told again, not only
  // when it next moves.
  client.on('state', () => client.state === 'ready' && showWhereIAm());
  // An expired or refused token is told by the session banner.
  client.on('server_error', (error) => error.code !== 'AUTHENTICATION_FAILED' && toast(`${error.code}: ${error.message}`, 'info'));

  // --- cells ----------------------------------------------------------------------------------
  // A range someone pasted or cleared arrives as one message and is told as one line, not a line per
  // cell that would push everything else out of the activity: the cells of one message change in one
  // go, so they are gathered until the task that applied them ends.
  /** @type {Map<string, {name: string, cells: [string, any][]}>} */
  const untold = new Map();
  const tellLater = (/** @type {string} */ cellId, /** @type {any} */ theirs) => {
    if (!untold.size) queueMicrotask(tellGathered);
    const userId = theirs.user_id ?? '';
    const entry = untold.get(userId) ?? { name: theirs.username ?? userId, cells: [] };
    entry.cells.push([cellId, theirs.value]);
    untold.set(userId, entry);
  };
  const tellGathered = () => {
    for (const [userId, { name, cells }] of untold) {
      const [[first, value]] = cells;
      const [last] = cells[cells.length - 1];
      if (cells.length === 1) activity(`${name} set ${first} = ${quote(value) || '(empty)'}`, colourOf(userId));
      else if (cells.every(([, v]) => v === null)) activity(`${name} cleared ${cells.length} cells, ${first} to ${last}`, colourOf(userId));
      else activity(`${name} changed ${cells.length} cells, ${first} to ${last}`, colourOf(userId));
    }
    untold.clear();
  };
  sheet.on('change', ({ cell_id, cell, source }) => {
    grid.render(cell_id, cell);
    // `cell` is the cell as shown, which is this person's own edit while one is pending: what the
    // other person set is the server's cell.
    const theirs = sheet.cells.get(cell_id);
    if (source === 'remote' && theirs && theirs.user_id !== me.id) {
      grid.mark(cell_id, 'flash');
      tellLater(cell_id, theirs);
    }
    if (cell_id === grid.selected) showCellMeta(cell_id);
  });
  /** Everyone's name as last seen in the room, still known once they left. @type {Map<string, string>} */
  const names = new Map();
  // Someone who left since is still named as they were, not by their id.
  const nameOf = (/** @type {string | null | undefined} */ userId) =>
    (userId ? (room?.users.get(userId)?.username ?? names.get(userId) ?? userId) : 'someone');
  sheet.on('conflict', ({ cell_id, attempted, current, error, reset }) => {
    grid.mark(cell_id, 'conflicted');
    if (error?.conflicts) return; // a range: refused whole, told once by onRange below
    if (reset) {
      toast(
        `Your change of ${cell_id} to ${quoted(attempted)} was not applied: it was made on a value the server no longer has. ${cell_id} shows the server's value ${quoted(current?.value)}.`,
        'conflict',
      );
      activity(`Your change of ${cell_id} was not applied (the room's history was reset)`, '#d92d20');
      return;
    }
    const who = nameOf(current?.user_id);
    toast(
      `Conflict on ${cell_id}: ${who} changed it to ${quoted(current?.value)} before your ${quoted(attempted)} arrived. The cell shows their value (v${current?.version}).`,
      'conflict',
    );
    activity(`Conflict on ${cell_id}: kept ${who}'s value`, '#d92d20');
  });
  const edit = (/** @type {Promise<any>} */ promise) => promise.catch((error) => {
    if (revoked) return; // the banner says why nothing is saved any more
    if (error.code !== 'VERSION_CONFLICT' && error.code !== 'CLOSED') toast(`Edit refused: ${error.message}`, 'conflict');
  });
  // What each open editor was started on: a change someone else makes while a person types is not
  // shown in their editor, so their value must not silently overwrite it (it conflicts instead).
  let editing = /** @type {{id: string, base: any} | null} */ (null);
  // This person's own edits, one step per action, for Ctrl+Z and Ctrl+Y (see "undo and redo" below).
  const undoHistory = new UndoHistory(100);
  /** Drops the step of an edit that was not applied, and passes the refusal on. @param {import('./undo.js').UndoStep} step */
  const unrecord = (step) => (/** @type {any} */ error) => {
    undoHistory.forget(step);
    throw error;
  };
  grid.onCommit = (id, value) => {
    const base = editing?.id === id ? editing.base : undefined;
    editing = null;
    const step = undoHistory.record([{ cell_id: id, before: sheet.get(id)?.value, after: value }]);
    edit(sheet.set(id, value, { base }).catch(unrecord(step)));
  };
  /**
   * Tells why a range edit was refused. `what` names the edit: "change" for a paste or a clear,
   * "undo" or "redo" for one of those.
   * @param {number} count @param {string} what
   */
  const rangeRefused = (count, what) => (/** @type {any} */ error) => {
    if (error.code !== 'VERSION_CONFLICT') return edit(Promise.reject(error));
    if (error.payload?.reset) {
      toast(`Your ${what} of ${count} cells was not applied: it was made on values the server no longer has. The cells show the server's values.`, 'conflict');
      activity(`Your ${what} of ${count} cells was not applied (the room's history was reset)`, '#d92d20');
      return undefined;
    }
    // All or nothing: one stale cell keeps every cell of the range from being written, and each
    // shows the current value again. Say so, not only which cell conflicted.
    const stale = /** @type {{cell_id: string, current: any}[]} */ (error.conflicts ?? []);
    const [first] = stale;
    const why = !first
      ? 'an earlier edit of one of its cells conflicted'
      : stale.length === 1
        ? `${nameOf(first.current?.user_id)} changed ${first.cell_id} to ${quoted(first.current?.value)} meanwhile`
        : `${stale.slice(0, 3).map((c) => c.cell_id).join(', ')}${stale.length > 3 ? ` and ${stale.length - 3} more` : ''} were changed by someone else meanwhile`;
    toast(`Your ${what} of ${count} cells was not applied: ${why}. A range is saved whole or not at all; the cells show the current values.`, 'conflict');
    activity(`Your ${what} of ${count} cells was not applied (conflict)`, '#d92d20');
    return undefined;
  };
  grid.onRange = (cells, cleared) => {
    activity(`You ${cleared ? 'cleared' : 'pasted'} ${cells.length} cells`, colourOf(me.id));
    const step = undoHistory.record(cells.map((c) => ({ cell_id: c.cell_id, before: sheet.get(c.cell_id)?.value, after: c.value })));
    sheet.setRange(cells).catch(unrecord(step)).catch(rangeRefused(cells.length, 'change'));
  };
  const showCellMeta = (/** @type {string} */ id) => {
    const cell = sheet.get(id);
    $('cell-meta').textContent = cell?.version ? `v${cell.version}${cell.username || cell.user_id ? ` · ${cell.username ?? cell.user_id}` : ''}${cell.pending ? ' · saving…' : ''}` : '';
  };

  // --- undo and redo ---------------------------------------------------------------------------
  // Ctrl+Z takes back this person's own last step, never anyone else's edit: it writes each cell's
  // value before the step as a new edit (versioned, saved and seen by everyone like any other), and
  // Ctrl+Y or Ctrl+Shift+Z writes the step's values again. A cell someone else changed since keeps
  // their value, and the person is told.
  /** @type {import('./undo.js').ChangedSince} */
  const changedSince = (cellId, expected) => {
    const shown = sheet.get(cellId);
    const server = sheet.cells.get(cellId);
    // A pending edit is this page's own: what it shows is what this person last wrote there.
    const theirs = !shown?.pending && server !== undefined && server.user_id !== me.id;
    return (shown?.value ?? null) === expected && !theirs ? null : (server?.user_id ?? '');
  };
  const whoChanged = (/** @type {string} */ userId) => (userId === me.id ? 'you' : nameOf(userId));
  /** "B3: chen changed it since", or for several cells "B3, C4: chen and dora changed them since". @param {{cell_id: string, by: string}[]} skipped */
  const skippedText = (skipped) => {
    const ids = skipped.slice(0, 4).map((c) => c.cell_id).join(', ') + (skipped.length > 4 ? ` and ${skipped.length - 4} more` : '');
    const who = [...new Set(skipped.map((c) => whoChanged(c.by)))];
    const people = who.length > 1 ? `${who.slice(0, -1).join(', ')} and ${who[who.length - 1]}` : who[0];
    return `${ids}: ${people} changed ${skipped.length === 1 ? 'it' : 'them'} since`;
  };
  /** @param {'undo' | 'redo'} which */
  const undoOrRedo = (which) => {
    const move = undoHistory[which](changedSince);
    if (!move) return;
    const { step, cells, write, skipped } = move;
    // The selection goes to the step's cells, so the person sees what changed (and what did not).
    const places = cells.map(parseCell);
    const cols = places.map(([c]) => c);
    const rows = places.map(([, r]) => r);
    grid.selectRange(cellName(Math.min(...cols), Math.min(...rows)), cellName(Math.max(...cols), Math.max(...rows)));
    const done = which === 'undo' ? 'undone' : 'redone';
    if (skipped.length) {
      for (const { cell_id } of skipped) grid.mark(cell_id, 'conflicted');
      const rest = write.length ? ` The other ${write.length === 1 ? 'cell was' : `${write.length} cells were`} ${done}.` : '';
      toast(`Can't ${which} ${skippedText(skipped)}.${rest}`, 'conflict');
      activity(`Can't ${which} ${skippedText(skipped)}`, '#d92d20');
    }
    if (!write.length) return;
    const [only] = write;
    activity(
      write.length === 1
        ? `You ${which === 'undo' ? 'undid' : 'redid'} your edit of ${only.cell_id} (now ${quoted(only.value)})`
        : `You ${which === 'undo' ? 'undid' : 'redid'} your edit of ${write.length} cells`,
      colourOf(me.id),
    );
    // Written as any edit is (one cell alone, a range as one all-or-nothing edit, as a paste), and
    // refused like one: a conflict is told as conflicts are, and the step, never applied, is dropped.
    if (write.length === 1) edit(sheet.set(only.cell_id, only.value).catch(unrecord(step)));
    else sheet.setRange(write).catch(unrecord(step)).catch(rangeRefused(write.length, which));
  };
  // On the grid only: in the cell's editor or the formula bar, Ctrl+Z is the browser's undo of the text.
  $('grid-scroller').addEventListener('keydown', (e) => {
    if (e.target !== e.currentTarget || grid.editing || grid.readOnly) return;
    if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
    // A layout without Latin letters (Cyrillic, Greek) names the key by its own letter: where it is says which.
    const key = /^[a-z]$/i.test(e.key) ? e.key.toLowerCase() : e.code.replace(/^Key/, '').toLowerCase();
    const which = key === 'z' ? (e.shiftKey ? 'redo' : 'undo') : key === 'y' && !e.shiftKey ? 'redo' : null;
    if (!which) return;
    e.preventDefault();
    // A held key repeats some thirty times a second, each an edit sent: a run of them would spend the
    // edit rate limit (and its block) in seconds. One undo per press.
    if (e.repeat) return;
    undoOrRedo(which);
  });
  // After a history reset the cells are the server's, not those the steps were made on.
  client.on('room_reset', ({ room_id }) => room_id === roomId && undoHistory.clear());

  // --- presence, cursors, typing --------------------------------------------------------------
  /** @type {import('/client/collab-client.js').Room | undefined} */
  let room;
  let typingIn = /** @type {string | null} */ (null);
  let typingRefresh = 0;
  grid.onSelect = (id) => {
    showCellMeta(id);
    room?.moveCursor(pointer.x, pointer.y, id);
    renderPresence(); // the person's own entry says where they are
  };
  grid.onEditOpen = (id) => {
    if (editing?.id !== id) editing = { id, base: sheet.editBase(id) };
  };
  grid.onEditStart = (id) => {
    if (editing?.id !== id) editing = { id, base: sheet.editBase(id) };
    const now = Date.now();
    if (typingIn === id && now - typingRefresh < 3000) return; // the server expires a start after 5 s
    if (typingIn && typingIn !== id) room?.stopTyping(typingIn);
    typingIn = id;
    typingRefresh = now;
    room?.startTyping(id);
  };
  grid.onEditEnd = () => {
    const ended = editing;
    queueMicrotask(() => editing === ended && (editing = null)); // after the commit that follows at once, if any
    // The stop names the cell the others were told of, whichever cell the grid says ended.
    if (typingIn) room?.stopTyping(typingIn);
    typingIn = null;
  };
  const pointer = { x: 0, y: 0, sentAt: 0, timer: 0 };
  /** Tells the others where this person is: on joining, after a resume, and as it changes. */
  const showWhereIAm = () => room?.moveCursor(pointer.x, pointer.y, grid.selected);
  grid.onPointer = (x, y) => {
    Object.assign(pointer, { x, y });
    const wait = 80 - (Date.now() - pointer.sentAt); // about 12 a second: within the volatile budget
    clearTimeout(pointer.timer);
    pointer.timer = window.setTimeout(() => {
      pointer.sentAt = Date.now();
      room?.moveCursor(pointer.x, pointer.y, grid.selected);
    }, Math.max(0, wait));
  };

  /**
   * How this person's own entry reads while the page is not connected, else null. Once in the room
   * any state but `ready` is a connection being restored (a restart, a dropped socket, the resume
   * that follows them): the others no longer see this person meanwhile.
   */
  const ownAbsence = () =>
    session.ended ? 'Disconnected · session ended'
    : client.state === 'offline' ? 'Offline'
    : client.state === 'closed' ? 'Disconnected'
    : client.state !== 'ready' ? 'Reconnecting…'
    : null;
  client.on('state', () => renderPresence());
  // The status picker shows this person's status as the room has it: one set in another tab, or
  // before a reload, is theirs here too. One picked here shows until the room has it (it may wait
  // offline to be sent), or until it is refused.
  const statusPicker = /** @type {HTMLSelectElement} */ ($('status'));
  let statusPicked = /** @type {string | null} */ (null);
  const renderPresence = () => {
    if (!room) return;
    const members = room.members;
    for (const u of members) names.set(u.user_id, u.username);
    const myStatus = room.users.get(me.id)?.status ?? 'online';
    if (statusPicked === myStatus) statusPicked = null;
    statusPicker.value = statusPicked ?? myStatus;
    // Who left keeps the colour they had, for what the activity still says of them.
    colours = new Map([...colours, ...roomColours(members.map((u) => u.user_id))]);
    grid.selectionBox.style.setProperty('--who', colourOf(me.id));
    $('me').querySelector('.avatar')?.style.setProperty('--who', colourOf(me.id));
    const typing = new Map();
    for (const [cell, who] of room.typing) for (const userId of who.keys()) typing.set(userId, cell);
    // The others as last seen; this person as the page knows them: not online while it is not connected.
    const away = ownAbsence();
    const statusOf = (/** @type {any} */ u) => (u.user_id === me.id && away ? 'offline' : u.status);
    fill($('presence'), ...members.slice(0, 6).map((u) => avatar(u.user_id, u.username, statusOf(u), colourOf(u.user_id))));
    fill(
      $('people'),
      ...members.map((u) => {
        const typingCell = typing.get(u.user_id);
        // The server tells a cursor to the others, never back to its sender: the person's own cell is the grid's.
        const at = u.user_id === me.id ? grid.selected : u.cursor?.cell;
        const where = typingCell ? ` · typing in ${typingCell}` : at ? ` · at ${at}` : '';
        const label = u.user_id === me.id && away ? away : `${statusLabel(u.status)}${where}`;
        return el(
          'li',
          { dataset: { user: u.user_id, status: statusOf(u) }, vars: { '--who': colourOf(u.user_id) } },
          avatar(u.user_id, u.username, statusOf(u), colourOf(u.user_id)),
          el('div', { class: 'who' },
            el('span', {}, u.username, u.user_id === me.id ? ' (you)' : ''),
            el('span', { class: `where${typingCell ? ' typing' : ''}` }, label)),
        );
      }),
    );
    for (const u of members) {
      if (u.user_id === me.id) continue;
      grid.markers.set(u.user_id, {
        name: u.username,
        colour: colourOf(u.user_id),
        cell: u.cursor?.cell ?? null,
        x: u.cursor?.x,
        y: u.cursor?.y,
        typing: typing.has(u.user_id),
      });
    }
    for (const userId of [...grid.markers.all.keys()]) if (!room.users.has(userId)) grid.markers.remove(userId);
  };

  statusPicker.addEventListener('change', () => {
    const status = statusPicker.value;
    statusPicked = status;
    client.setStatus(/** @type {any} */ (status)).catch(() => {
      if (statusPicked === status) statusPicked = null;
      renderPresence(); // back to the status the room has
    });
  });

  // --- notifications, announcements, AI, files -----------------------------------------------
  wireNotifications(client);
  client.on('message', (m) => {
    if (HANDLED.has(m.type) || !(m.title || m.message)) return;
    toast(`${m.title ? `${m.title}: ` : ''}${m.message ?? ''}`, 'info');
    activity(`${m.title ?? m.type}${m.message ? ` — ${m.message}` : ''}`, '#175cd3');
  });
  // The end of a run asked from another tab of the person's (one with an editor's token) comes here too.
  wireAi(client, sheetId, () => viewOnly || revoked);
  wireFiles(client, roomId, () => colourOf(me.id));

  // --- go -------------------------------------------------------------------------------------
  try {
    await client.connect();
    room = await client.join(roomId);
    showWhereIAm();
    room.on('presence', renderPresence);
    room.on('typing', renderPresence);
    room.on('cursor', (m) => {
      if (m.user_id === me.id) return;
      // Named as the room shows them: a tab still under an older name sends its cursor with that one.
      const name = room.users.get(m.user_id)?.username ?? m.username;
      grid.markers.set(m.user_id, { name, colour: colourOf(m.user_id), cell: m.cursor?.cell ?? null, x: m.cursor?.x, y: m.cursor?.y });
      renderPresence();
    });
    // Who the activity has shown in the room, by the name it showed: a `user_joined` of someone
    // already there is a rename (a newer token with another name), not an arrival.
    const announced = new Map(room.members.map((u) => [u.user_id, u.username]));
    // After a room_reset the page rejoined without a replay: who came and went meanwhile was never
    // told, so what the activity has shown is redone from the room as the rejoin found it.
    let rejoined = false;
    client.on('room_reset', ({ room_id }) => { rejoined ||= room_id === roomId; });
    client.on('ready', () => {
      if (!rejoined) return;
      rejoined = false;
      announced.clear();
      for (const u of room.members) announced.set(u.user_id, u.username);
    });
    client.on('user_joined', (m) => {
      const { user_id: userId, username } = m.user;
      if (m.room_id !== roomId || userId === me.id) return;
      const before = announced.get(userId);
      announced.set(userId, username);
      if (before === undefined) activity(`${username} joined`, colourOf(userId));
      else if (before !== username) activity(`${before} is now ${username}`, colourOf(userId));
    });
    // By the time `user_left` is emitted the room has already removed the user: name them from before.
    // Their own user_left reaches a person only in a resume's replay (their drop): not news to them.
    client.on('user_left', (m) => {
      if (m.room_id !== roomId || m.user_id === me.id) return;
      announced.delete(m.user_id);
      activity(`${names.get(m.user_id) ?? m.user_id} left`, colourOf(m.user_id));
    });
    renderPresence();
    await sheet.load();
    for (const id of sheet.cells.keys()) grid.render(id, sheet.get(id));
    showCellMeta(grid.selected);
    grid._showFormula();
    $('grid-scroller').focus();
    await client.subscribeNotifications({});
    document.body.dataset.ready = 'true';
  } catch (error) {
    toast(`Could not open the sheet: ${/** @type {Error} */ (error).message}`, 'conflict');
  }
}

/** @param {string} userId @param {string} name @param {string} [status] @param {string} [colour] */
function avatar(userId, name, status, colour = colourFor(userId)) {
  return el('span', { class: 'avatar', title: `${name}${status ? ` (${status})` : ''}`, vars: { '--who': colour } },
    initials(name), status ? el('span', { class: `status-dot ${status}` }) : null);
}

/** @param {string} status */
const statusLabel = (status) => ({ online: 'Online', away: 'Away', busy: 'Busy' })[status] ?? status ?? 'Online';

