// collab-client's edits across drops, resumes and other people's changes, against a real server
// (started by tests/browser/test_client_library.py, like live.test.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';

import { configured, mintToken, newClient, next, rest, sleep, suiteOfClients, unique, until } from './helpers.js';

const skip = configured ? false : 'COLLAB_WS_URL, COLLAB_HTTP_URL and COLLAB_JWT_SECRET are not set (run through pytest)';

describe('collab-client edits across drops and resumes', { skip }, () => {
  const suite = suiteOfClients();
  const { open } = suite;

  test('an edit queued behind an unacknowledged one of the same cell conflicts with a change made meanwhile', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const aliceToken = mintToken(unique('alice'));
    const alice = open({ token: aliceToken, url: suite.proxy.url, connectTimeout: 1000 });
    const bob = open({ token: mintToken(unique('bob')) });
    await alice.connect();
    await bob.connect();
    await alice.join(room);
    await bob.join(room);
    const aliceSheet = alice.sheet(sheetId, { room });
    await aliceSheet.set('A1', 'alice 0');

    // The server applies Alice's next edit (version 2), but neither its echo nor its ack reaches her.
    suite.proxy.swallow(true);
    const first = aliceSheet.set('A1', 'alice 1');
    await sleep(300);
    suite.proxy.block(true);
    suite.proxy.cut();
    suite.proxy.swallow(false);
    await next(alice, 'disconnected');
    // Offline, she edits A1 again: on the version her first edit produced.
    const second = aliceSheet.set('A1', 'alice 2');
    second.catch(() => {});

    // Meanwhile Bob, who saw "alice 1", overwrites it.
    const bobSheet = await bob.sheet(sheetId, { room }).load();
    assert.equal(bobSheet.get('A1').value, 'alice 1');
    await bobSheet.set('A1', 'bob');

    suite.proxy.block(false);
    await first;
    await assert.rejects(second, (error) => error.code === 'VERSION_CONFLICT');
    const history = (await rest(aliceToken, `/api/v1/sheets/${sheetId}/cells/A1/history`)).body.versions;
    assert.deepEqual(history.map((v) => v.value), ['alice 0', 'alice 1', 'bob']);
    await until(() => aliceSheet.get('A1')?.pending === false, 'the edit settled');
    assert.equal(aliceSheet.get('A1').value, 'bob');
  });

  test('after a room_reset the sheet is reloaded from the server, and an edit made on the old history is a conflict', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const aliceToken = mintToken(unique('alice'));
    const alice = open({ token: aliceToken, url: suite.proxy.url, connectTimeout: 1000 });
    const bob = open({ token: mintToken(unique('bob')) });
    await alice.connect();
    await bob.connect();
    const aliceRoom = await alice.join(room);
    await bob.join(room);
    await bob.sheet(sheetId, { room }).set('A1', 'on the server');
    const aliceSheet = await alice.sheet(sheetId, { room }).load();
    assert.equal(aliceSheet.get('A1').value, 'on the server');

    // What Alice saw is a history the server no longer has (it was restored from an older backup):
    // a later seq, and cells with values and versions the server never had or no longer has.
    aliceRoom.seq += 100;
    aliceSheet.cells.set('A1', { value: 'from the lost history', formula: null, version: 7, user_id: null });
    aliceSheet.cells.set('B2', { value: 'gone', formula: null, version: 3, user_id: null });

    suite.proxy.block(true);
    suite.proxy.cut();
    await next(alice, 'disconnected');
    // Offline, she edits what she sees: version 7, which the server would take (its A1 is at 1).
    const edit = aliceSheet.set('A1', 'alice');
    edit.catch(() => {});
    const conflicts = [];
    aliceSheet.on('conflict', (conflict) => conflicts.push(conflict));
    const reset = next(alice, 'room_reset');
    suite.proxy.block(false);
    assert.equal((await reset).room_id, room);

    await assert.rejects(edit, (error) => error.code === 'VERSION_CONFLICT');
    await until(() => aliceSheet.get('A1')?.pending === false, 'the edit settled');
    assert.equal(aliceSheet.get('A1').value, 'on the server');
    assert.equal(aliceSheet.get('A1').version, 1);
    assert.equal(aliceSheet.get('B2'), undefined);
    assert.equal(conflicts.length, 1);
    assert.equal(conflicts[0].cell_id, 'A1');
    assert.equal(conflicts[0].current.value, 'on the server');
    assert.equal(conflicts[0].reset, true);
    const history = (await rest(aliceToken, `/api/v1/sheets/${sheetId}/cells/A1/history`)).body.versions;
    assert.deepEqual(history.map((v) => v.value), ['on the server']);

    // Edits from now on are made on the server's versions, and go through.
    await aliceSheet.set('A1', 'alice again');
    assert.equal(aliceSheet.get('A1').version, 2);
  });

  test('edits of a cell that keep overlapping do not keep every earlier edit in memory', async () => {
    const room = unique('room');
    const client = open({ token: mintToken(unique('ticker')) });
    await client.connect();
    await client.join(room);
    const sheet = client.sheet(unique('sheet'), { room });
    // A value fed faster than its acks come back (a live figure): each edit is made while the one
    // before it still waits, so one of them is always pending.
    let previous = sheet.set('A1', 0);
    const first = new WeakRef(previous);
    for (let i = 1; i <= 40; i += 1) {
      const current = sheet.set('A1', i);
      await previous;
      previous = current;
    }
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc');
    gc(); // at once, while the newest edit still waits for its ack
    const reachable = first.deref() !== undefined;
    assert.equal(sheet.get('A1').pending, true);
    await previous;
    assert.equal(reachable, false, 'the first edit, settled long ago, is still held by the newest one');
  });

  test('pendingEdits counts every edit not yet acknowledged, one waiting behind an edit of its cell too', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const client = open({ token: mintToken(unique('counter')), url: suite.proxy.url, connectTimeout: 1000 });
    await client.connect();
    await client.join(room);
    const sheet = client.sheet(sheetId, { room });
    assert.equal(client.pendingEdits, 0);
    /** @type {number[]} */
    const told = [];
    client.on('queue', () => told.push(client.pendingEdits));

    suite.proxy.block(true);
    suite.proxy.cut();
    await next(client, 'disconnected');
    const edits = [
      sheet.set('A1', 'one'),
      sheet.set('A1', 'two'), // waits for the first: not sent before it is acknowledged
      sheet.setRange([{ cell_id: 'B1', value: 1 }, { cell_id: 'B2', value: 2 }]),
      client.send({ type: 'cell_update', sheet_id: sheetId, room, cell_id: 'C1', value: 'sent as it is', version: 0 }),
    ];
    const offline = client.pendingEdits;
    const toldOffline = told.at(-1);

    suite.proxy.block(false);
    await Promise.all(edits);
    assert.equal(offline, 4);
    assert.equal(toldOffline, 4, 'the queue event told the count');
    assert.equal(client.pendingEdits, 0);
    assert.equal(told.at(-1), 0, 'the queue event told the last one acknowledged');
  });

  test('a typing indicator whose stop was missed while disconnected is gone after the resume', async () => {
    const room = unique('room');
    const alice = open({ token: mintToken(unique('alice')), url: suite.proxy.url, connectTimeout: 1000 });
    const bob = open({ token: mintToken(unique('bob')) });
    await alice.connect();
    await bob.connect();
    const aliceRoom = await alice.join(room);
    const bobRoom = await bob.join(room);
    bobRoom.startTyping('B2');
    await until(() => aliceRoom.typing.has('B2'), 'Bob typing in B2');

    suite.proxy.block(true);
    suite.proxy.cut();
    await next(alice, 'disconnected');
    bobRoom.stopTyping('B2'); // volatile: a resume does not replay it
    await sleep(200);
    suite.proxy.block(false);
    await next(alice, 'resumed');
    assert.ok(aliceRoom.users.has(bob.session.user.user_id), 'Bob is still in the room');
    assert.deepEqual([...aliceRoom.typing.keys()], []);
  });

  test('a notification read elsewhere while disconnected is no longer unread after the resume', async () => {
    const user = unique('reader');
    const token = mintToken(user);
    const client = open({ token, url: suite.proxy.url, connectTimeout: 1000 });
    await client.connect();
    await client.subscribeNotifications({});
    const admin = mintToken(unique('admin'), { roles: ['admin'] });
    const created = await rest(admin, '/api/v1/ws/broadcast/notification?event_type=notification_created', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user_id: user, title: 'Hello', message: 'read me' }),
    });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const id = created.body.notification_id;
    await until(() => client.unread.has(id), 'the notification, unread');

    suite.proxy.block(true);
    suite.proxy.cut();
    await next(client, 'disconnected');
    assert.equal((await rest(token, `/api/v1/notifications/${id}/read`, { method: 'POST' })).status, 200); // another tab
    suite.proxy.block(false);
    await next(client, 'ready');
    await next(client, 'notifications');
    assert.deepEqual([...client.unread.keys()], []);
  });

  test('a direct message is unread as it arrives, as the subscription lists it, unless its filters leave it out', async () => {
    const user = unique('reader');
    const token = mintToken(user);
    const everything = open({ token });
    const filtered = open({ token });
    await everything.connect();
    await filtered.connect();
    await everything.subscribeNotifications({});
    await filtered.subscribeNotifications({ categories: ['system'] });
    let delivered = false;
    filtered.on('message', (/** @type {any} */ m) => (delivered ||= m.type === 'direct_message'));
    const admin = mintToken(unique('admin'), { roles: ['admin'] });
    const sent = await rest(admin, `/api/v1/ws/users/${user}/notify`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'direct_message', title: 'Budget review', message: 'Check Q3' }),
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    const id = sent.body.notification_id;
    await until(() => everything.unread.has(id), 'the direct message, unread');
    const listed = await rest(token, '/api/v1/notifications?unread=true');
    const [served] = listed.body.notifications.filter((/** @type {any} */ n) => n.id === id);
    const { title, message, category } = everything.unread.get(id);
    assert.deepEqual({ title, message, category }, { title: served.title, message: served.message, category: served.category });
    await until(() => delivered, 'the direct message, at the filtered subscription');
    assert.equal(filtered.unread.has(id), false); // a direct message is not in the category `system`

    await everything.markNotificationRead(id);
    await until(() => !everything.unread.has(id), 'the direct message, read');
  });

  test('a room broadcast is no notification, even one posted with a notification_id', async () => {
    // A room broadcast may carry any key but the envelope's: an admin reusing a notify's body keeps
    // its `notification_id`. No inbox holds it, so it could never be marked read.
    const room = unique('room');
    const client = open({ token: mintToken(unique('reader')) });
    await client.connect();
    await client.join(room);
    await client.subscribeNotifications({});
    let seen = false;
    client.on('message', (/** @type {any} */ m) => (seen ||= m.type === 'team_note'));
    const admin = mintToken(unique('admin'), { roles: ['admin'] });
    const sent = await rest(admin, `/api/v1/ws/rooms/${room}/broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'team_note', title: 'Standup', message: 'At ten', notification_id: 'standup' }),
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.body));
    await until(() => seen, 'the broadcast');
    assert.deepEqual([...client.unread.keys()], []);
  });

  test('a sheet load whose answer was lost with the connection is answered after the reconnect', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const writer = open({ token: mintToken(unique('writer')) });
    const reader = open({ token: mintToken(unique('reader')), url: suite.proxy.url, connectTimeout: 1000 });
    await writer.connect();
    await reader.connect();
    await writer.join(room);
    await reader.join(room);
    await writer.sheet(sheetId, { room }).set('A1', 'there');

    suite.proxy.swallow(true); // the load_sheet goes out; its sheet_state never comes back
    const started = Date.now();
    const loading = reader.sheet(sheetId, { room }).load();
    await sleep(300);
    suite.proxy.block(true);
    suite.proxy.cut();
    suite.proxy.swallow(false);
    await next(reader, 'disconnected');
    suite.proxy.block(false);
    const sheet = await loading;
    assert.equal(sheet.get('A1')?.value, 'there');
    assert.ok(Date.now() - started < 5000, `answered after ${Date.now() - started} ms`);
  });

  test('new tokens the server keeps refusing (4401) are tried with backoff, not in a tight loop', async () => {
    const user = unique('refused');
    let asked = 0;
    const client = open({
      token: mintToken(user, { ttl: -60 }),
      getToken: () => {
        asked += 1;
        return mintToken(user, { ttl: -60 }); // a new token each time, and each already expired
      },
    });
    client.connect().catch(() => {});
    await sleep(1500);
    client.close();
    // backoff {initial: 50, max: 400}: about ten attempts in 1.5 s at most, not hundreds
    assert.ok(asked >= 2 && asked <= 15, `asked for a token ${asked} times in 1.5 s`);
  });

  test('after server_shutdown with reconnect_after, the 1012 reconnect waits that long', async () => {
    const client = open({ token: mintToken(unique('restart')) });
    await client.connect();
    const scheduled = next(client, 'reconnecting');
    // As a drain announces it, then closes (a real one would stop the server).
    client._dispatch({ type: 'server_shutdown', reason: 'server restart', timestamp: new Date().toISOString(), reconnect_after: 0.5 });
    const socket = client._ws;
    client._detach();
    socket.close();
    client._lost(1012, 'server restart');
    const { delay } = await scheduled;
    assert.ok(delay >= 500, `reconnects after ${delay} ms`);
    await next(client, 'ready');
  });
});

describe('collab-client closed while it waits', { skip }, () => {
  test('close() while a new token is being fetched after a 4401 stays closed: no reconnect', async () => {
    const user = unique('closing');
    /** @type {(token: string) => void} */
    let answer = () => {};
    let asked = 0;
    const client = newClient({
      token: mintToken(user, { ttl: -60 }),
      getToken: () => {
        asked += 1;
        return new Promise((resolve) => {
          answer = resolve;
        });
      },
    });
    const states = [];
    client.on('state', ({ state }) => states.push(state));
    client.connect().catch(() => {});
    await until(() => asked === 1, 'the client asking for a new token');
    client.close();
    answer(mintToken(user)); // the token arrives after the application closed the client
    await sleep(500);
    const after = { state: client.state, socket: client._ws !== null, states: states.slice(states.lastIndexOf('closed')) };
    client.close(); // whatever happened, end it: a live client keeps the test process running
    assert.deepEqual(after, { state: 'closed', socket: false, states: ['closed'] });
  });
});
