// collab-client when the server takes access away: a refreshed token that no longer allows a room
// (started by tests/browser/test_client_library.py, like live.test.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { configured, mintToken, next, rest, sleep, suiteOfClients, unique, until } from './helpers.js';

const skip = configured ? false : 'COLLAB_WS_URL, COLLAB_HTTP_URL and COLLAB_JWT_SECRET are not set (run through pytest)';

describe('collab-client when access ends: revoked rooms, expired tokens', { skip }, () => {
  const suite = suiteOfClients();
  const { open } = suite;

  test('a room the refreshed token no longer allows is dropped, what waits for it settled, and never rejoined', async () => {
    const user = unique('revoked');
    const room = unique('room');
    const sheetId = unique('sheet');
    const client = open({
      token: mintToken(user, { ttl: 4, rooms: [room] }), // token_expiring after 2 s
      getToken: () => mintToken(user, { rooms: ['elsewhere-*'] }),
      url: suite.proxy.url,
      connectTimeout: 1000,
    });
    await client.connect();
    const joined = await client.join(room);
    const sheet = client.sheet(sheetId, { room });
    await sheet.set('A1', 'before');
    const problems = [];
    client.on('server_error', (error) => problems.push(`server_error ${error.code}`));
    client.on('room_error', ({ error }) => problems.push(`room_error ${error.code}`));
    const framesLeft = [];
    client.on('room_left', (message) => framesLeft.push(message));

    // An edit sent once the new token is in force, before its `room_left` arrives: pending then.
    /** @type {Promise<any> | undefined} */
    let during;
    client.once('token_refreshed', () => {
      during = sheet.set('A1', 'during');
      during.catch(() => {});
    });
    let pendingWhenTold = null;
    const revoked = new Promise((resolve) =>
      client.once('room_revoked', (event) => {
        pendingWhenTold = sheet.get('A1').pending;
        resolve(event);
      }),
    );
    const event = await Promise.race([revoked, sleep(8000).then(() => null)]);
    assert.ok(event, 'room_revoked was emitted');
    assert.equal(event.room_id, room);
    assert.deepEqual(framesLeft.map((m) => [m.room_id, m.reason, m.client_msg_id]), [[room, 'revoked', undefined]]);
    assert.equal(pendingWhenTold, false, 'the pending edit was settled when the room was dropped');
    await assert.rejects(during, (error) => error.code === 'PERMISSION_DENIED');
    assert.equal(client.rooms.has(room), false);
    assert.equal(joined.joined, false);
    assert.deepEqual(joined.members, []);
    assert.equal(sheet.get('A1').value, 'before');
    await assert.rejects(sheet.set('A1', 'after'), (error) => error.code === 'PERMISSION_DENIED');

    // The next connection does not try to join it again.
    suite.proxy.cut();
    await next(client, 'ready');
    await sleep(300);
    assert.deepEqual(problems, []);
    assert.equal(client.rooms.has(room), false);
  });

  test('a room left and joined again at once is not taken for a revoked one', async () => {
    const user = unique('rejoin');
    const room = unique('room');
    const sheetId = unique('sheet');
    const client = open({ token: mintToken(user) });
    await client.connect();
    await client.join(room);
    const sheet = client.sheet(sheetId, { room });
    await sheet.set('A1', 'before');
    let revoked = null;
    client.on('room_revoked', (event) => (revoked = event));
    const framesLeft = [];
    client.on('room_left', (message) => framesLeft.push(message));

    // Switching away and straight back: the leave is not awaited, so its `room_left` arrives after
    // the room was joined again. It answers this client's own leave, not a loss of access.
    const left = client.leave(room);
    const rejoined = await client.join(room);
    await left;
    await sleep(200);
    assert.equal(revoked, null, 'no room_revoked for the answer to its own leave');
    assert.deepEqual(framesLeft.map((m) => [m.room_id, m.reason]), [[room, 'left']]);
    assert.equal(client.rooms.get(room), rejoined);
    assert.equal(rejoined.joined, true);
    assert.equal(sheet.revoked, null);
    await sheet.set('A1', 'after');
    assert.equal(sheet.get('A1').value, 'after');
  });

  test('after its token expired the client waits for getToken(), not ready, with its edits kept, then sends them once', async () => {
    const user = unique('expiring');
    const room = unique('room');
    const sheetId = unique('sheet');
    // The person has no new token yet: the app asks them, and answers when they paste one.
    /** @type {(token: string) => void} */
    let paste = () => {};
    const pasted = new Promise((resolve) => (paste = resolve));
    let asked = 0;
    let given = false;
    const client = open({
      token: mintToken(user, { ttl: 3 }),
      getToken: () => {
        asked += 1;
        return pasted;
      },
    });
    await client.connect();
    await client.join(room);
    const sheet = client.sheet(sheetId, { room });
    await until(() => asked > 0, 'a new token asked for on token_expiring');
    const closed = await next(client, 'disconnected', 8000);
    assert.equal(closed.code, 4401);
    await sleep(100);
    assert.notEqual(client.state, 'ready', 'not ready while no token can reconnect it');
    let readyEarly = false;
    client.ready().then(() => (readyEarly = !given), () => {});
    const edit = sheet.set('A1', 'typed after the session ended');
    await sleep(300);
    assert.equal(client._outbox.size, 1, 'the edit is kept');
    assert.equal(sheet.get('A1').pending, true);

    const fresh = mintToken(user);
    given = true;
    paste(fresh);
    await edit;
    assert.equal(readyEarly, false);
    assert.equal(client.token, fresh);
    await until(() => sheet.get('A1')?.pending === false, 'the edit settled');
    const history = (await rest(fresh, `/api/v1/sheets/${sheetId}/cells/A1/history`)).body.versions;
    assert.deepEqual(history.map((v) => v.value), ['typed after the session ended']);
  });
});
