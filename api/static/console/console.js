// The admin and auditor console. Admins: live figures, rooms, connections (with remove), broadcasts
// and notifications. Auditors (and admins): a room's timeline, a replay scrubber over its seq that
// shows the sheet as of any seq, each cell's history, and export. REST through collab-client.
import { CollabClient } from '/client/collab-client.js';
import { TokenSession, askForToken, claimsOf, colourFor, el, fill, initials, roomColours, takeToken } from '/static/shared/session.js';
import { startAudit } from './audit.js';
import { renderChart } from './chart.js';
import { duration, table } from './format.js';

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const STATS_EVERY_MS = 2000;
const CHART_POINTS = 60;

const token = takeToken();
if (!token) askForToken('The console needs an admin or auditor token.', 'collab token --sub admin --role admin');
else start(token);

/** @param {string} token */
async function start(token) {
  const claims = claimsOf(token) ?? {};
  const roles = claims.roles ?? ['editor'];
  const isAdmin = roles.includes('admin');
  const isAuditor = isAdmin || roles.includes('auditor');
  const name = claims.username ?? claims.sub ?? '?';
  fill($('me'), ...roles.map((r) => el('span', { class: 'role' }, r)), el('span', { class: 'avatar', vars: { '--who': colourFor(claims.sub ?? '') } }, initials(name)), name);

  // A token ends: as in the sheet app, the console stays as it is (tab, room, replay position) and a
  // new token is pasted into the session banner. What it asks the server meanwhile waits for it.
  const mint = `collab token --sub ${claims.sub ?? 'admin'} --role ${roles.join(' ')}`;
  const session = new TokenSession({
    banner: $('banner'),
    me: { id: claims.sub ?? '', name },
    mint,
    kept: () => 'The console stays as it is; paste a new token to reconnect.',
    onChange: () => showState(),
  });
  const client = new CollabClient({ token, getToken: session.getToken });
  session.attach(client);
  Object.assign(window, { collab: { client } });
  /**
   * REST with the session's token; while the session has ended, once a new token took.
   * @param {string} path @param {{method?: string, body?: any, raw?: boolean}} [init]
   */
  const rest = async (path, init) => {
    await session.live();
    return client.rest(path, init);
  };
  const showState = () => {
    const ok = client.state === 'ready';
    const ended = session.ended && !ok;
    $('connection').textContent = ended ? 'Session ended' : ok ? 'Live' : client.state === 'closed' ? 'Disconnected' : 'Reconnecting…';
    $('connection').className = `pill ${ok ? 'ok' : ended || client.state === 'closed' ? 'bad' : 'warn'}`;
    $('connection').dataset.state = ended ? 'session-ended' : client.state;
  };
  client.on('state', showState);
  client.on('auth_failed', () => askForToken('Your token was refused or has expired.', mint));
  client.connect().catch(() => {});

  // --- tabs -----------------------------------------------------------------------------------
  const allowed = (/** @type {string} */ needs) => (needs === 'admin' ? isAdmin : isAuditor);
  /** @type {Record<string, () => void>} */
  const onShow = {};
  let current = '';
  /** The audit tab, once wired. @type {ReturnType<typeof startAudit> | null} */
  let audit = null;
  // The address names the tab and the room open (or, until its opening settles, the one it asks for).
  const address = () => {
    // Until the audit tab is wired, the room is the one the address asks for.
    const room = audit ? audit.room() : (new URLSearchParams(location.search).get('room') ?? '');
    history.replaceState(null, '', `${location.pathname}?tab=${current}${room ? `&room=${encodeURIComponent(room)}` : ''}`);
  };
  const show = (/** @type {string} */ tab) => {
    current = tab;
    for (const button of document.querySelectorAll('#tabs button')) button.classList.toggle('active', button.dataset.tab === tab);
    for (const section of document.querySelectorAll('.tab')) section.hidden = section.id !== `tab-${tab}`;
    address();
    onShow[tab]?.();
  };
  for (const button of document.querySelectorAll('#tabs button')) {
    button.hidden = !allowed(button.dataset.needs);
    button.addEventListener('click', () => show(button.dataset.tab));
  }
  if (!isAuditor) {
    fill(document.querySelector('main'), el('p', { class: 'empty' }, 'This console is for admins and auditors; your token has neither role.'));
    return;
  }

  const notice = (/** @type {string} */ text, kind = 'info') => {
    const box = el('div', { class: `toast ${kind}` }, el('span', {}, text), el('button', { class: 'close', type: 'button', onclick: () => box.remove() }, '×'));
    $('toasts').append(box);
    setTimeout(() => box.remove(), 6000);
  };
  const failed = (/** @type {any} */ error) => notice(`${error.code ?? 'ERROR'}: ${error.message}`, 'conflict');

  // --- overview (admin) -----------------------------------------------------------------------
  /** @type {number[]} */
  const rates = [];
  const refreshStats = async () => {
    if (current !== 'overview') return;
    try {
      const stats = await rest('/api/v1/ws/stats/detailed');
      rates.push(stats.messages_per_second);
      while (rates.length > CHART_POINTS) rates.shift();
      const cards = [
        ['Connections', stats.total_connections],
        ['Rooms active', stats.rooms_active],
        ['Messages / s', stats.messages_per_second.toFixed(1)],
        ['Nodes alive', stats.nodes_alive],
        ['Events appended', stats.events_appended.toLocaleString()],
        ['Log head', stats.log_head.toLocaleString()],
      ];
      fill($('stat-cards'), ...cards.map(([label, value]) => el('div', { class: 'card stat', dataset: { stat: label } }, el('span', { class: 'label' }, label), el('span', { class: 'value' }, value))));
      $('rate-now').textContent = `now ${stats.messages_per_second.toFixed(2)} / s`;
      renderChart($('rate-chart'), rates, CHART_POINTS);
      const byType = Object.entries(stats.messages_by_type).sort((a, b) => b[1] - a[1]);
      fill($('by-type'), table(['Type', 'Messages'], byType.map(([t, n]) => [el('span', { class: 'mono' }, t), n.toLocaleString()])));
      const nodes = Object.entries(stats.nodes);
      fill($('nodes'), table(
        ['Node', 'Connections', 'Rooms', 'Messages / s', 'Events appended', 'Batches', 'Uptime'],
        nodes.map(([id, n]) => [el('span', { class: 'mono' }, id), n.connections, n.rooms_active, n.messages_per_second.toFixed(2), n.events_appended.toLocaleString(), n.appender.batches.toLocaleString(), duration(n.uptime_seconds)]),
      ));
    } catch (error) {
      failed(error);
    }
  };
  onShow.overview = refreshStats;
  setInterval(() => session.ended || refreshStats(), STATS_EVERY_MS); // no figures to chart meanwhile

  // --- rooms ----------------------------------------------------------------------------------
  const refreshRooms = async () => {
    try {
      const rooms = await rest('/api/v1/ws/rooms?limit=200');
      fill($('room-ids'), ...rooms.map((/** @type {any} */ r) => el('option', { value: r.room_id })));
      fill($('rooms'), table(
        ['Room', 'Users', 'Sheets', 'Messages', 'Last activity'],
        rooms.map((/** @type {any} */ r) => [el('strong', {}, r.room_id), r.user_count, r.active_sheets_count, r.messages_sent, r.last_activity ? `${new Date(r.last_activity).toLocaleString()}` : '—']),
        (i) => showRoom(rooms[i].room_id),
      ));
      return rooms;
    } catch (error) {
      failed(error);
      return [];
    }
  };
  const showRoom = async (/** @type {string} */ roomId) => {
    try {
      const room = await rest(`/api/v1/ws/rooms/${encodeURIComponent(roomId)}`);
      $('room-detail-title').textContent = room.room_id;
      const colours = roomColours(room.members.map((/** @type {any} */ m) => m.user_id));
      fill($('room-detail'),
        el('dl', { class: 'facts' },
          el('dt', {}, 'Seq'), el('dd', {}, room.seq),
          el('dt', {}, 'Sheets'), el('dd', {}, room.active_sheets.join(', ') || '—'),
          el('dt', {}, 'Messages'), el('dd', {}, room.messages_sent),
          el('dt', {}, 'Avg users / hour'), el('dd', {}, room.avg_users_per_hour.toFixed(2))),
        el('h2', {}, `Members (${room.members.length})`),
        ...room.members.map((/** @type {any} */ m) => el('div', { class: 'member', dataset: { user: m.user_id } },
          // In the colour the sheet app shows them in, in this room.
          el('span', { class: 'avatar', vars: { '--who': colours.get(m.user_id) ?? colourFor(m.user_id) } }, initials(m.username)),
          el('span', {}, m.username), el('span', { class: 'muted' }, `${m.status}${m.cursor?.cell ? ` · at ${m.cursor.cell}` : ''}`))),
        el('div', {}, el('button', { class: 'button primary', type: 'button', onclick: () => { show('audit'); audit?.open(room.room_id); } }, 'Audit this room')));
    } catch (error) {
      failed(error);
    }
  };
  onShow.rooms = refreshRooms;
  $('rooms-refresh').addEventListener('click', refreshRooms);

  // --- connections (admin) --------------------------------------------------------------------
  const refreshConnections = async () => {
    try {
      const listed = await rest('/api/v1/ws/connections');
      $('connections-node').textContent = `node ${listed.node_id}`;
      const mine = client.session?.connection_id;
      fill($('connections'), listed.connections.length ? table(
        ['Connection', 'User', 'Roles', 'Rooms', ''],
        listed.connections.map((/** @type {any} */ c) => [
          el('span', { class: 'mono' }, c.connection_id, c.connection_id === mine ? ' (this console)' : ''),
          el('span', {}, el('span', { class: 'who-dot', vars: { '--who': colourFor(c.user_id) } }), c.username),
          c.roles.join(', '),
          c.rooms.join(', ') || '—',
          c.connection_id === mine ? '' : el('button', {
            class: 'button small danger', type: 'button', dataset: { remove: c.connection_id, user: c.user_id },
            onclick: async () => {
              try {
                await rest(`/api/v1/ws/connections/${encodeURIComponent(c.connection_id)}`, { method: 'DELETE' });
                notice(`Removed ${c.username}'s connection ${c.connection_id}`);
              } catch (error) {
                failed(error);
              }
              refreshConnections();
            },
          }, 'Remove'),
        ]),
      ) : el('p', { class: 'empty' }, 'No connections.'));
    } catch (error) {
      failed(error);
    }
  };
  onShow.connections = refreshConnections;
  $('connections-refresh').addEventListener('click', refreshConnections);

  // --- messages (admin) -----------------------------------------------------------------------
  const form = (/** @type {string} */ id, /** @type {(data: FormData) => Promise<string>} */ submit) => {
    $(id).addEventListener('submit', async (/** @type {Event} */ e) => {
      e.preventDefault();
      const result = $(id).querySelector('.result');
      try {
        result.textContent = await submit(new FormData($(id)));
        result.className = 'result ok';
      } catch (error) {
        result.textContent = `${/** @type {any} */ (error).code}: ${/** @type {any} */ (error).message}`;
        result.className = 'result bad';
      }
    });
  };
  form('broadcast-form', async (data) => {
    const room = String(data.get('room'));
    const sent = await rest(`/api/v1/ws/rooms/${encodeURIComponent(room)}/broadcast`, {
      method: 'POST', body: { type: 'system_announcement', title: data.get('title'), message: data.get('message') },
    });
    return `Sent to ${room} as seq ${sent.seq}, delivered to ${sent.delivered_to} connection(s).`;
  });
  form('notify-form', async (data) => {
    const user = String(data.get('user'));
    const sent = await rest(`/api/v1/ws/users/${encodeURIComponent(user)}/notify`, {
      method: 'POST', body: { type: 'direct_message', title: data.get('title'), message: data.get('message') },
    });
    return `Kept in ${user}'s stream as seq ${sent.seq}, delivered to ${sent.delivered_to} connection(s).`;
  });
  form('notification-form', async (data) => {
    const body = Object.fromEntries([...data.entries()].filter(([, v]) => v !== ''));
    const { user, ...rest } = body;
    const sent = await rest('/api/v1/ws/broadcast/notification?event_type=notification_created', {
      method: 'POST', body: { user_id: user, ...rest },
    });
    return `Notification ${sent.notification_id} created for ${sent.user_id}.`;
  });
  onShow.messages = refreshRooms;

  audit = startAudit({ rest, failed, address });

  onShow.audit = () => {
    refreshRooms();
    audit?.shown();
  };

  const asked = new URLSearchParams(location.search).get('tab');
  show(asked && allowed(document.querySelector(`#tabs button[data-tab="${asked}"]`)?.dataset.needs ?? 'admin') ? asked : isAdmin ? 'overview' : 'audit');
  showState();
}
