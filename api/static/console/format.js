// How the console shows what the API answers: tables, a log event in a line, times and durations.
import { el } from '/static/shared/session.js';
import { quote } from '/static/app/cells.js';

/**
 * A table of rows; with `onPick`, a row is picked by a click, or from the keyboard: each row is a
 * stop of Tab, and Enter or Space picks it, as a button would be.
 * @param {string[]} headers @param {any[][]} rows
 * @param {(i: number) => void} [onPick] @param {(i: number) => Record<string, any>} [data]
 */
export function table(headers, rows, onPick, data) {
  /** @param {number} i */
  const pickable = (i) => (onPick ? {
    class: 'clickable',
    tabindex: 0,
    onclick: () => onPick(i),
    onkeydown: (/** @type {KeyboardEvent} */ e) => {
      if (e.target !== e.currentTarget || (e.key !== 'Enter' && e.key !== ' ')) return;
      e.preventDefault();
      onPick(i);
    },
  } : {});
  return el('table', { class: 'data' },
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', {}, h)))),
    el('tbody', {}, ...rows.map((cells, i) => el('tr', { dataset: data?.(i), ...pickable(i) },
      ...cells.map((c) => el('td', {}, c))))));
}

/** @param {any} e an event of the log */
export function summary(e) {
  const d = e.data;
  switch (e.type) {
    case 'CellUpdated':
      return `${d.sheet_id}!${d.cell_id} = ${d.value === null || d.value === undefined ? '(empty)' : quote(d.value)}${d.version ? ` (v${d.version})` : ''}`;
    case 'CellsUpdated':
      return `${d.sheet_id}: ${(d.cells ?? []).length} cells`;
    case 'UserJoinedRoom':
      return `${d.username} joined`;
    case 'UserLeftRoom':
      return `${d.user_id} left (${d.reason})`;
    case 'RoomMessageBroadcast':
      return `${d.message?.title ?? d.message?.type}: ${d.message?.message ?? ''}`;
    case 'CursorMoved':
      return `cursor at ${d.cell ?? `${d.x},${d.y}`}`;
    case 'TypingStarted':
    case 'TypingStopped':
      return `${e.type === 'TypingStarted' ? 'typing in' : 'stopped typing in'} ${d.cell_id}`;
    default:
      return '';
  }
}

/**
 * The last instant of the second a time picker names, as the API's `until` (which includes its bound)
 * takes it. The picker goes to the second and the log to the microsecond: To 09:52:40 keeps an event
 * recorded at 09:52:40.97, which the timeline lists as 09:52:40.
 * @param {string} local a datetime-local value, in the browser's zone
 */
export function endOfSecond(local) {
  const at = new Date(local);
  at.setMilliseconds(0);
  return at.toISOString().replace(/\.000Z$/, '.999999Z');
}

/** @param {number} seconds */
export function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}
