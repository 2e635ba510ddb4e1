// The side panels: the notifications bell, the AI analysis and the files, each wired to the client's
// events. What they share with the rest of the page comes in as arguments.
import { el, fill } from '/static/shared/session.js';
import { activity, toast } from './notices.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/**
 * The bell: the person's unread notifications, each with Mark read, and a notice as one arrives.
 * @param {import('/client/collab-client.js').CollabClient} client
 */
export function wireNotifications(client) {
  const renderNotifications = () => {
    const unread = [...client.unread.values()];
    const badge = $('unread');
    badge.hidden = unread.length === 0;
    badge.textContent = String(unread.length);
    fill(
      $('notification-list'),
      ...(unread.length
        ? unread.map((n) =>
            el('li', { class: `priority-${n.priority ?? 'normal'}`, dataset: { id: n.id } },
              el('div', { class: 'text' }, el('span', { class: 'title' }, n.title), el('span', { class: 'muted' }, n.message)),
              el('button', { class: 'button small', type: 'button', onclick: () => client.markNotificationRead(n.id).catch(() => {}) }, 'Mark read')))
        : [el('li', { class: 'muted' }, 'You are all caught up.')]),
    );
  };
  client.on('notifications', renderNotifications);
  client.on('notification_event', (m) => {
    if (m.event_type === 'notification_created') toast(`${m.notification.title}: ${m.notification.message}`, 'info');
  });
  $('bell').addEventListener('click', () => {
    $('notifications').hidden = !$('notifications').hidden;
  });
}

/**
 * The AI panel: a request for the sheet's analysis, its progress as it streams, and its result.
 * `barred` says whether this page may not ask for one (a viewer's page, or a room taken from it):
 * Analyze sheet stays disabled then, even when a run another tab of the person's asked for ends.
 * @param {import('/client/collab-client.js').CollabClient} client @param {string} sheetId
 * @param {() => boolean} barred
 */
export function wireAi(client, sheetId, barred) {
  const aiProgress = $('ai-progress');
  client.on('ai_event', (m) => {
    if (m.event_type === 'ai_start') {
      aiProgress.hidden = false;
      aiProgress.style.setProperty('--p', '2%');
      $('ai-status').textContent = 'Started…';
      fill($('ai-result'));
    } else if (m.event_type === 'ai_progress') {
      aiProgress.style.setProperty('--p', `${m.data.progress}%`);
      $('ai-status').textContent = `${m.data.progress}% · ${m.data.status}`;
    } else if (m.event_type === 'ai_complete') {
      aiProgress.style.setProperty('--p', '100%');
      $('ai-status').textContent = `Done in ${Number(m.data.processing_time ?? 0).toFixed(2)} s`;
      renderAi(m.data);
      /** @type {HTMLButtonElement} */ ($('ai-run')).disabled = barred();
    } else if (m.event_type === 'ai_error') {
      $('ai-status').textContent = `Failed: ${m.data.error}`;
      /** @type {HTMLButtonElement} */ ($('ai-run')).disabled = barred();
    }
  });
  $('ai-form').addEventListener('submit', (e) => {
    e.preventDefault();
    /** @type {HTMLButtonElement} */ ($('ai-run')).disabled = true;
    const query = /** @type {HTMLTextAreaElement} */ ($('ai-query')).value.trim() || 'Analyze this data';
    client.requestAi({ query, sheetId }).result.catch((error) => {
      $('ai-status').textContent = `Failed: ${error.message}`;
      /** @type {HTMLButtonElement} */ ($('ai-run')).disabled = barred();
    });
  });
}

/**
 * The files panel: every upload of the user's tabs with its progress, failure or download, and the
 * Upload button. `ownColour` is the person's colour, for the activity's line.
 * @param {import('/client/collab-client.js').CollabClient} client @param {string} roomId
 * @param {() => string} ownColour
 */
export function wireFiles(client, roomId, ownColour) {
  /** @type {Map<string, {row: HTMLElement, bar: HTMLElement, note: HTMLElement, name: string}>} */
  const files = new Map();
  const fileRow = (/** @type {string} */ fileId, /** @type {string} */ name, /** @type {number} */ size) => {
    let entry = files.get(fileId);
    if (!entry) {
      const bar = el('div', { class: 'bar' });
      const note = el('span', { class: 'muted file-size' }, formatBytes(size));
      const row = el('li', { dataset: { file: fileId } },
        el('div', { class: 'file-row' }, el('span', { class: 'file-name', title: name }, name), note),
        el('div', { class: 'progress' }, bar));
      entry = { row, bar, note, name };
      files.set(fileId, entry);
      $('files').querySelector('.empty-line')?.remove();
      $('files').prepend(row);
    }
    return entry;
  };
  const progress = (/** @type {string} */ fileId, /** @type {number} */ percent) => {
    const entry = files.get(fileId);
    if (!entry) return;
    entry.bar.style.setProperty('--p', `${Math.min(100, percent)}%`);
    entry.row.dataset.progress = String(Math.round(percent));
  };
  client.on('file_upload_started', (m) => fileRow(m.file_id, m.filename, m.file_size));
  client.on('file_upload_progress', (m) => {
    fileRow(m.file_id, files.get(m.file_id)?.name ?? m.file_id, m.total_bytes);
    progress(m.file_id, m.percentage);
  });
  client.on('file_upload_complete', (m) => {
    const entry = fileRow(m.file_id, m.filename, m.size);
    progress(m.file_id, 100);
    entry.row.classList.add('done');
    fill(entry.note, formatBytes(m.size), ' · ',
      el('button', { class: 'button small', type: 'button', onclick: () => download(client, m.url, m.filename) }, 'Download'));
    activity(`Uploaded ${m.filename}`, ownColour());
  });
  client.on('file_upload_failed', (m) => {
    const entry = fileRow(m.file_id, m.filename || m.file_id, m.bytes_uploaded);
    entry.row.classList.remove('done');
    entry.row.classList.add('failed');
    fill(entry.note, `failed: ${m.reason.replace('_', ' ')}`);
  });
  $('upload-input').addEventListener('change', (e) => {
    const input = /** @type {HTMLInputElement} */ (e.target);
    const file = input.files?.[0];
    input.value = '';
    if (!file) return;
    const fileId = `f-${client.nextId()}`;
    fileRow(fileId, file.name, file.size);
    client
      .uploadFile(file, { fileId, roomId, onProgress: ({ loaded, total }) => progress(fileId, (loaded / total) * 100) })
      .catch((error) => {
        // A refused start (a file over the server's limit) records nothing, so no file_upload_failed
        // will mark the row: mark it here, unless that event already told why.
        const entry = files.get(fileId);
        if (entry && !entry.row.classList.contains('failed')) {
          entry.row.classList.add('failed');
          fill(entry.note, `failed: ${error.message}`);
        }
        toast(`Upload failed: ${error.message}`, 'conflict');
      });
  });
}

/** The analysis: its sentences, then a table of the numeric columns' figures. @param {any} data */
function renderAi(data) {
  const lines = String(data.result ?? '').split('\n').filter(Boolean);
  const numeric = (data.details?.columns ?? []).filter((/** @type {any} */ c) => c.type === 'numeric' && typeof c.mean === 'number');
  const figure = (/** @type {number} */ n) => (Math.abs(n) >= 1000 ? Math.round(n).toLocaleString() : Number(n.toFixed(2)).toString());
  fill(
    $('ai-result'),
    ...lines.map((line) => el('p', {}, line)),
    numeric.length
      ? el('table', {},
          el('thead', {}, el('tr', {}, ...['Column', 'Mean', 'Min', 'Max', 'Trend'].map((h) => el('th', {}, h)))),
          el('tbody', {}, ...numeric.map((/** @type {any} */ c) => el('tr', {},
            el('td', {}, c.name ?? c.column), el('td', {}, figure(c.mean)), el('td', {}, figure(c.min)),
            el('td', {}, figure(c.max)), el('td', {}, c.trend ?? '—')))))
      : null,
  );
}

/** @param {number} bytes */
function formatBytes(bytes) {
  if (!bytes && bytes !== 0) return '';
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Downloads with the bearer token (a plain link could not send it). @param {CollabClient} client @param {string} url @param {string} name */
async function download(client, url, name) {
  const response = await client.rest(url, { raw: true });
  const href = URL.createObjectURL(await response.blob());
  const link = el('a', { href, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
}
