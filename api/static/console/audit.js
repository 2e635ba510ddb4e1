// The audit tab: a room's timeline read from the log, a replay scrubber over its seq, each cell's
// history, and the export. What it asks the server goes through the console's session (`rest`).
import { clock, colourFor, el, fill } from '/static/shared/session.js';
import { parseCell } from '/static/app/cells.js';
import { endOfSecond, summary, table } from './format.js';

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const BASE_TYPES = ['CellUpdated', 'CellsUpdated', 'UserJoinedRoom', 'UserLeftRoom', 'RoomMessageBroadcast'];
const PAGE = 100; // timeline rows read at a time
const MAX_PAGE = 1000; // the most events the history API answers at once

/**
 * Wires the audit tab. `address` rewrites the page's address when the room open changes.
 * @param {{rest: (path: string, init?: {method?: string, body?: any, raw?: boolean}) => Promise<any>,
 *   failed: (error: any) => void, address: () => void}} page
 */
export function startAudit({ rest, failed, address }) {
  // The room open: every control (Export, Filter, Load older and more, Latest) and the address are
  // of it. A room becomes it only once its details came; until then the one the address asks for waits.
  let auditRoom = '';
  let askedRoom = new URLSearchParams(location.search).get('room') ?? '';
  let roomSeq = 0;
  let roomFacts = ''; // members and sheets, as the room's details said
  /** @type {Map<number, any>} seq -> event, for labels */
  const eventsBySeq = new Map();
  /** Types the timeline has listed without a seq: cursors and typing, kept only while asked for. */
  const volatileTypes = new Set();
  let nextCursor = /** @type {number | null} */ (null);
  let pickedCell = /** @type {string | null} */ (null);
  const scrubber = $('scrubber');

  let openings = 0;
  const openAudit = async (/** @type {string} */ roomId) => {
    // A newer opening (the page's own, then a click on Open) supersedes one still in flight, so a
    // late answer never moves the scrubber back to the latest seq after the person moved it.
    const opening = ++openings;
    $('replay-grid').setAttribute('aria-busy', 'true');
    try {
      const detail = await rest(`/api/v1/ws/rooms/${encodeURIComponent(roomId)}`);
      if (opening !== openings) return;
      // Another room's cell history would read as this room's: it goes with the room it was of.
      // The same room opened again (Latest) keeps it, asked again for the versions written since.
      if (roomId !== auditRoom) forgetCell();
      auditRoom = roomId;
      askedRoom = '';
      $('audit-room').value = roomId;
      address();
      roomSeq = detail.seq;
      const sheets = detail.active_sheets;
      const previous = $('audit-sheet').value;
      fill($('audit-sheet'), ...sheets.map((/** @type {string} */ s) => el('option', { value: s, selected: s === previous }, s)));
      roomFacts = `${detail.members.length} online · ${sheets.length} sheet${sheets.length === 1 ? '' : 's'}`;
      showSummary();
      $('export').disabled = false;
      scrubber.max = String(roomSeq);
      scrubber.value = String(roomSeq);
      eventsBySeq.clear();
      await loadTimeline('fresh');
      if (opening !== openings) return;
      // The room opens at its latest seq: the newest the timeline read, unless the scrubber was moved.
      if (Number(scrubber.value) === detail.seq) scrubber.value = String(roomSeq);
      await replay();
      if (opening === openings && pickedCell) await cellHistory(pickedCell);
      if (opening === openings) $('replay-grid').setAttribute('aria-busy', 'false');
    } catch (error) {
      if (opening !== openings) return;
      $('replay-grid').setAttribute('aria-busy', 'false');
      // A room that could not be opened (unknown, or not this token's) leaves the one open as it was,
      // its id back in the field; the notice (the server's message) names the room asked for.
      if (roomId === askedRoom) askedRoom = '';
      $('audit-room').value = auditRoom;
      address();
      failed(error);
    }
  };

  const showSummary = () => {
    $('audit-summary').textContent = `seq ${roomSeq} · ${roomFacts}`;
  };
  // A room's details come from the projection tables, which follow the log by up to 100 ms: an event
  // the timeline or a cell's history shows may be newer than their seq. The scrubber reaches every
  // seq the page has been shown.
  const reach = (/** @type {number} */ seq) => {
    if (seq <= roomSeq) return;
    roomSeq = seq;
    scrubber.max = String(seq);
    showSummary();
    showLabel();
  };

  /** The filter as the API takes it: types, a time range, cursors and typing. */
  const timelineQuery = () => {
    const params = new URLSearchParams();
    const type = $('filter-type').value;
    if (type) params.set('types', type);
    const since = $('filter-since').value;
    const until = $('filter-until').value;
    if (since) params.set('since', new Date(since).toISOString());
    if (until) params.set('until', endOfSecond(until));
    if ($('filter-volatile').checked) params.set('include_volatile', 'true');
    return params;
  };
  /** @param {URLSearchParams} filter @param {Record<string, number>} at where the page starts, and its size */
  const eventsPage = (filter, at) => {
    const params = new URLSearchParams(filter);
    for (const [name, value] of Object.entries(at)) params.set(name, String(value));
    return rest(`/api/v1/rooms/${encodeURIComponent(auditRoom)}/events?${params}`);
  };

  // The timeline holds every event matching its filter after seq `fromSeq`, oldest first, up to
  // `nextCursor` (null: up to the newest when read). It opens on the room's newest events; Load older
  // adds those before, Load more those after, by the filter it was opened with (not one changed in
  // the form since without Filter). A read started later (another room, another filter) makes the
  // answers of earlier ones moot.
  /** @type {any[]} */
  let shown = [];
  let fromSeq = 0;
  let filter = timelineQuery();
  let timelineRoom = ''; // the room whose events the rows are
  let timelineReads = 0;

  /**
   * At least `want` events matching `filter` before those held (fewer when the room has no more),
   * and the seq they start after. The API reads a room forward from a seq, not backwards, so the page
   * reads windows of seqs back from `start.fromSeq`, each from its start up to the first event
   * already held. A window that held fewer than wanted is followed by one twice as wide, so that an
   * event type that is rare takes a few reads rather than one per hundred seqs; one that holds more
   * than a page is narrowed, so what is added always joins what is held.
   * @param {number} read the fresh read this continues
   * @param {URLSearchParams} filter
   * @param {{first: any, fromSeq: number, ahead: number | null}} start the first event held (none:
   *   undefined), the seq the events held start after, and the cursor after them
   * @param {number} [want]
   */
  const readOlder = async (read, filter, start, want = PAGE) => {
    /** @type {any[]} */
    let found = [];
    let target = start.fromSeq;
    let ahead = start.ahead;
    let width = PAGE;
    while (target > 0 && found.length < want) {
      // Where the window ends: before the first event held, or, while none is, nowhere.
      const bound = (found[0] ?? start.first)?.position ?? null;
      const within = (/** @type {any} */ page) => (bound === null ? page.events : page.events.filter((/** @type {any} */ e) => e.position < bound));
      const from = Math.max(0, target - width);
      let page = await eventsPage(filter, { after_seq: from, limit: bound === null ? MAX_PAGE : Math.min(MAX_PAGE, width + PAGE) });
      if (read !== timelineReads) return null;
      let events = within(page);
      let next = events.length === page.events.length ? page.next_cursor : null;
      if (next !== null && width > 1) {
        width = Math.ceil(width / 2);
        continue;
      }
      // More than a page within one seq (cursors and typing between two events): the rest of it, or,
      // with nothing held after it, the rest for Load more.
      while (next !== null && bound !== null) {
        page = await eventsPage(filter, { cursor: next, limit: MAX_PAGE });
        if (read !== timelineReads) return null;
        const more = within(page);
        events = events.concat(more);
        next = more.length === page.events.length ? page.next_cursor : null;
      }
      if (bound === null) ahead = next;
      found = events.concat(found);
      target = from;
      width *= 2;
    }
    // Without cursors and typing every event has a seq, so what a wide window read past the `want`
    // newest can be left for the next Load older.
    if (found.length > want && !filter.has('include_volatile')) {
      found = found.slice(-want);
      target = found[0].seq - 1;
    }
    return { found, from: target, ahead };
  };

  const showLoaders = () => {
    $('timeline-older').hidden = fromSeq === 0;
    $('timeline-more').hidden = nextCursor === null;
  };
  /**
   * The timeline of the room open: its newest events (`fresh`), older ones, or newer ones. The rows
   * change only once the answer came: a fresh read that fails leaves them as they were, unless they
   * are of another room.
   */
  const loadTimeline = async (/** @type {'fresh' | 'older' | 'newer'} */ which) => {
    const box = $('timeline');
    const fresh = which === 'fresh';
    if (fresh) {
      timelineReads++;
      $('timeline-older').hidden = true;
      $('timeline-more').hidden = true;
    }
    const read = timelineReads;
    /** @type {any[]} */
    let added = [];
    try {
      if (which === 'newer') {
        if (nextCursor === null) return;
        const page = await eventsPage(filter, { cursor: nextCursor, limit: PAGE });
        if (read !== timelineReads) return;
        added = page.events;
        shown = shown.concat(added);
        nextCursor = page.next_cursor;
      } else {
        const asked = fresh ? timelineQuery() : filter;
        const start = fresh ? { first: undefined, fromSeq: roomSeq, ahead: null } : { first: shown[0], fromSeq, ahead: nextCursor };
        const older = await readOlder(read, asked, start);
        if (older === null) return;
        added = older.found;
        shown = fresh ? added : added.concat(shown);
        filter = asked;
        fromSeq = older.from;
        nextCursor = older.ahead;
        if (fresh) timelineRoom = auditRoom;
      }
    } catch (error) {
      if (fresh && read === timelineReads) {
        if (timelineRoom === auditRoom) showLoaders();
        else {
          shown = [];
          fromSeq = 0;
          nextCursor = null;
          timelineRoom = auditRoom;
          fill(box, el('p', { class: 'empty' }, 'The timeline could not be read.'));
        }
      }
      throw error;
    }
    for (const e of added) {
      if (e.seq !== null) eventsBySeq.set(e.seq, e);
      else volatileTypes.add(e.type);
    }
    reach(Math.max(0, ...added.map((e) => e.seq ?? 0)));
    const types = new Set([...BASE_TYPES, ...shown.map((e) => e.type)]);
    const chosen = $('filter-type').value;
    fill($('filter-type'), el('option', { value: '' }, 'All types'), ...[...types].sort().map((t) => el('option', { value: t, selected: t === chosen }, t)));
    // Rows added above keep those on screen in place; a fresh timeline shows its newest rows.
    const fromBottom = box.scrollHeight - box.scrollTop;
    fill(box, shown.length ? table(
      ['Seq', 'Time', 'Type', 'Who', 'What'],
      shown.map((e) => [e.seq ?? '·', el('span', { title: e.ts }, clock(e.ts)), el('span', { class: `type ${e.type}` }, e.type), e.data.username ?? e.user_id ?? '', summary(e)]),
      (i) => shown[i].seq !== null && scrubTo(shown[i].seq, shown[i].data.sheet_id),
      (i) => ({ seq: shown[i].seq ?? '' }),
    ) : el('p', { class: 'empty' }, 'No events match.'));
    if (fresh) box.scrollTop = box.scrollHeight;
    else if (which === 'older') box.scrollTop = box.scrollHeight - fromBottom;
    showLoaders();
  };
  // Cursors and typing left out, a type of theirs picked before would be a filter the API refuses
  // (a cursor type without cursors): the pick goes back to every type.
  $('filter-volatile').addEventListener('change', () => {
    if (!$('filter-volatile').checked && volatileTypes.has($('filter-type').value)) $('filter-type').value = '';
  });
  $('timeline-filter').addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    if (auditRoom) loadTimeline('fresh').catch(failed);
  });
  /**
   * A button that adds to the timeline, idle until its answer came: a second click meanwhile would
   * add the same events twice.
   * @param {string} id @param {'older' | 'newer'} which
   */
  const loader = (id, which) => $(id).addEventListener('click', async () => {
    $(id).disabled = true;
    try {
      await loadTimeline(which);
    } catch (error) {
      failed(error);
    } finally {
      $(id).disabled = false;
    }
  });
  loader('timeline-older', 'older');
  loader('timeline-more', 'newer');

  let replayTimer = 0;
  let replayed = 0;
  /** The scrubber's seq, with when and what happened there. */
  const showLabel = () => {
    const seq = Number(scrubber.value);
    const event = eventsBySeq.get(seq);
    if (!event && seq > 0) labelEvent(seq);
    $('scrub-label').replaceChildren(
      el('strong', {}, `seq ${seq}`), ` of ${roomSeq}`,
      event ? ` · ${new Date(event.ts).toLocaleString()} · ${event.type}${event.data.username ? ` by ${event.data.username}` : ''}` : seq === 0 ? ' · before anything happened' : '',
    );
  };
  /** @type {Set<number>} */
  const labelsAsked = new Set();
  /** The event at a seq the timeline does not hold (not read yet, or filtered out), for the label. */
  const labelEvent = async (/** @type {number} */ seq) => {
    const room = auditRoom;
    if (labelsAsked.has(seq)) return;
    labelsAsked.add(seq);
    try {
      const params = new URLSearchParams({ after_seq: String(seq - 1), limit: '1' });
      const page = await rest(`/api/v1/rooms/${encodeURIComponent(room)}/events?${params}`);
      if (room !== auditRoom || !page.events.length) return;
      eventsBySeq.set(seq, page.events[0]);
      if (Number(scrubber.value) === seq) showLabel();
    } catch (error) {
      if (room === auditRoom) failed(error);
    } finally {
      labelsAsked.delete(seq);
    }
  };
  const replay = async () => {
    const sheetId = $('audit-sheet').value;
    const seq = Number(scrubber.value);
    showLabel();
    $('replay-grid').dataset.seq = String(seq);
    if (!sheetId) {
      fill($('replay-grid'), el('p', { class: 'empty' }, 'No sheet has been edited in this room yet.'));
      return;
    }
    const asked = ++replayed;
    const state = await rest(`/api/v1/sheets/${encodeURIComponent(sheetId)}/cells?seq=${seq}`).catch((error) => {
      if (error.status === 404) return { cells: {} };
      throw error;
    });
    if (asked !== replayed) return; // a later position was asked for meanwhile
    renderReplay(state.cells, seq);
  };
  const renderReplay = (/** @type {Record<string, any>} */ cells, /** @type {number} */ seq) => {
    let maxCol = 5;
    let maxRow = 9;
    for (const id of Object.keys(cells)) {
      const [c, r] = parseCell(id);
      maxCol = Math.max(maxCol, Math.min(c + 1, 25)); // one spare column, never past Z (65 + 26 is '[')
      maxRow = Math.max(maxRow, r + 2);
    }
    const head = el('tr', {}, el('th'), ...Array.from({ length: maxCol + 1 }, (_, c) => el('th', {}, String.fromCharCode(65 + c))));
    const rows = Array.from({ length: maxRow + 1 }, (_, r) => el('tr', {}, el('th', {}, r + 1), ...Array.from({ length: maxCol + 1 }, (_, c) => {
      const id = `${String.fromCharCode(65 + c)}${r + 1}`;
      const cell = cells[id];
      const value = cell?.value ?? '';
      return el('td', {
        class: [typeof value === 'number' ? 'num' : '', cell && cell.seq === seq ? 'changed' : '', id === pickedCell ? 'picked' : ''].join(' ').trim() || undefined,
        dataset: { cell: id, version: cell?.version ?? '' },
        title: cell ? `v${cell.version} by ${cell.user_id} at seq ${cell.seq}` : undefined,
        onclick: () => cellHistory(id),
      }, String(value));
    })));
    fill($('replay-grid'), el('table', {}, el('thead', {}, head), el('tbody', {}, ...rows)));
  };
  /**
   * Moves the replay to `seq`; with `sheetId` (a timeline row of a cell edit), on that sheet, so the
   * edit clicked is the one shown, not the same seq of whichever sheet was picked before.
   * @param {number} seq @param {unknown} [sheetId]
   */
  const scrubTo = (seq, sheetId) => {
    scrubber.value = String(Math.max(0, Math.min(roomSeq, seq)));
    const picker = $('audit-sheet');
    if (typeof sheetId === 'string' && sheetId !== picker.value) {
      // A sheet first edited after the room was opened is not in the list yet.
      if (![...picker.options].some((o) => o.value === sheetId)) picker.append(el('option', { value: sheetId }, sheetId));
      picker.value = sheetId;
      sheetChanged();
      return;
    }
    replay().catch(failed);
  };
  scrubber.addEventListener('input', () => {
    clearTimeout(replayTimer);
    replayTimer = window.setTimeout(() => replay().catch(failed), 60);
  });
  $('scrub-prev').addEventListener('click', () => scrubTo(Number(scrubber.value) - 1));
  $('scrub-next').addEventListener('click', () => scrubTo(Number(scrubber.value) + 1));
  $('scrub-latest').addEventListener('click', () => auditRoom && openAudit(auditRoom));
  // The replay and the picked cell's history both show the sheet the picker names.
  const sheetChanged = () => {
    replay().catch(failed);
    if (pickedCell) cellHistory(pickedCell);
  };
  $('audit-sheet').addEventListener('change', sheetChanged);

  let historyAsked = 0;
  let historyShown = ''; // `sheet!cell` whose versions the list holds
  const forgetCell = () => {
    pickedCell = null;
    historyAsked++; // an answer still on its way is for the cell forgotten
    historyShown = '';
    $('history').hidden = true;
    fill($('history-list'));
    for (const td of $('replay-grid').querySelectorAll('td.picked')) td.classList.remove('picked');
  };
  const cellHistory = async (/** @type {string} */ cellId) => {
    pickedCell = cellId;
    for (const td of $('replay-grid').querySelectorAll('td.picked')) td.classList.remove('picked');
    $('replay-grid').querySelector(`td[data-cell="${cellId}"]`)?.classList.add('picked');
    const sheetId = $('audit-sheet').value;
    const asked = ++historyAsked;
    $('history').hidden = false;
    $('history-title').textContent = `History of ${cellId} in ${sheetId}`;
    // Until the answer comes, nothing of another cell or sheet stays under this title.
    const shows = `${sheetId}!${cellId}`;
    if (historyShown !== shows) fill($('history-list'), el('p', { class: 'empty' }, 'Loading…'));
    historyShown = shows;
    try {
      const found = await rest(`/api/v1/sheets/${encodeURIComponent(sheetId)}/cells/${encodeURIComponent(cellId)}/history?limit=1000`);
      if (asked !== historyAsked) return; // another cell or sheet was asked for meanwhile
      reach(Math.max(0, ...found.versions.map((/** @type {any} */ v) => v.seq)));
      fill($('history-list'), table(
        ['Version', 'Value', 'Author', 'When', 'Seq'],
        found.versions.map((/** @type {any} */ v) => [`v${v.version}`, String(v.value ?? ''), el('span', {}, el('span', { class: 'who-dot', vars: { '--who': colourFor(v.user_id) } }), v.user_id), new Date(v.ts).toLocaleString(), v.seq]),
        (i) => scrubTo(found.versions[i].seq),
        (i) => ({ version: found.versions[i].version, user: found.versions[i].user_id }),
      ));
    } catch (error) {
      if (asked !== historyAsked) return;
      if (/** @type {any} */ (error).status === 404) fill($('history-list'), el('p', { class: 'empty' }, `${cellId} was never written.`));
      else failed(error);
    }
  };

  $('audit-form').addEventListener('submit', (/** @type {Event} */ e) => {
    e.preventDefault();
    const roomId = $('audit-room').value.trim();
    if (roomId) openAudit(roomId);
  });
  $('export').addEventListener('click', async () => {
    try {
      const response = await rest(`/api/v1/rooms/${encodeURIComponent(auditRoom)}/export`, { raw: true });
      const href = URL.createObjectURL(await response.blob());
      const link = el('a', { href, download: `${auditRoom}.ndjson` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(href), 10000);
    } catch (error) {
      failed(error);
    }
  });
  return {
    /** The room the address names: the one open, or until an opening settles, the one asked for. */
    room: () => auditRoom || askedRoom,
    /** @param {string} roomId */
    open: (roomId) => openAudit(roomId),
    /** The tab shown: the room the address asked for is opened, once. */
    shown: () => {
      if (askedRoom && !auditRoom) openAudit(askedRoom);
    },
  };
}
