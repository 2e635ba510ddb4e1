// collab-client against a real collab-engine server (started by tests/browser/test_client_library.py,
// which passes its address and the test JWT secret in the environment).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { CollabError } from '../collab-client.js';
import { configured, mintToken, next, rest, sleep, suiteOfClients, unique, until } from './helpers.js';

const skip = configured ? false : 'COLLAB_WS_URL, COLLAB_HTTP_URL and COLLAB_JWT_SECRET are not set (run through pytest)';

describe('collab-client against a live server', { skip }, () => {
  const suite = suiteOfClients();
  const { open } = suite;

  test('connects with the token as subprotocol, joins, and resolves send() with its ack', async () => {
    const room = unique('room');
    const client = open({ token: mintToken(unique('alice')) });
    await client.connect();
    assert.equal(client.state, 'ready');
    assert.ok(client.session.connection_id);
    const joined = await client.join(room);
    assert.equal(joined.seq, 1);
    const ack = await client.send({ type: 'cell_update', sheet_id: unique('sheet'), cell_id: 'A1', value: 1, room });
    assert.equal(ack.type, 'ack');
    assert.equal(ack.room_id, room);
    assert.equal(ack.seq, 2);
  });

  test('a status set is the user\'s own in the rooms of the client that set it, as the others see it', async () => {
    const room = unique('room');
    const alice = open({ token: mintToken(unique('alice')) });
    const bob = open({ token: mintToken(unique('bob')) });
    await alice.connect();
    await bob.connect();
    const aliceRoom = await alice.join(room);
    const bobRoom = await bob.join(room);
    const aliceId = alice.session.user.user_id;
    await alice.setStatus('busy');
    assert.equal(aliceRoom.users.get(aliceId)?.status, 'busy');
    await until(() => bobRoom.users.get(aliceId)?.status === 'busy', 'her status, at Bob');
  });

  test('an error that echoes the client_msg_id rejects that send, with the server code', async () => {
    const client = open({ token: mintToken(unique('bob')) });
    await client.connect();
    await assert.rejects(
      client.send({ type: 'cell_update', sheet_id: unique('sheet'), cell_id: 'A1', value: 1, room: unique('not-joined') }),
      (error) => error instanceof CollabError && error.code === 'PERMISSION_DENIED',
    );
  });

  test('after a dropped connection it reconnects and resumes with since: no gap, no duplicate', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const writer = open({ token: mintToken(unique('writer')) });
    // A reconnect attempt made while the network is down may hang in its handshake; connectTimeout
    // gives it up, so the reader reconnects soon after the network returns.
    const reader = open({ token: mintToken(unique('reader')), url: suite.proxy.url, connectTimeout: 1000 });
    await writer.connect();
    await reader.connect();
    await writer.join(room);
    await reader.join(room);
    const seen = [];
    reader.on('cell_updated', (m) => seen.push(m.seq));
    const sheet = writer.sheet(sheetId, { room });
    for (let i = 0; i < 3; i += 1) await sheet.set(`A${i + 1}`, i);
    await until(() => seen.length === 3, 'three live updates');

    suite.proxy.block(true);
    suite.proxy.cut();
    await next(reader, 'disconnected');
    for (let i = 3; i < 8; i += 1) await sheet.set(`A${i + 1}`, i);
    suite.proxy.block(false);
    await next(reader, 'resumed');
    for (let i = 8; i < 10; i += 1) await sheet.set(`A${i + 1}`, i);
    await until(() => seen.length >= 10, 'ten updates in all');
    await sleep(100);
    assert.equal(seen.length, 10, `duplicates: ${seen}`);
    assert.deepEqual(seen, [...seen].sort((a, b) => a - b));
    assert.equal(new Set(seen).size, 10);
    const room_ = reader.rooms.get(room);
    assert.ok(room_.seq >= seen[seen.length - 1]);
  });

  test('a handshake that never completes is given up after connectTimeout and retried', async () => {
    const client = open({ token: mintToken(unique('stuck')), url: suite.proxy.url, connectTimeout: 500 });
    suite.proxy.swallow(true); // the server answers, nothing reaches the client: the socket stays CONNECTING
    const gaveUp = next(client, 'disconnected', 5000);
    const connected = client.connect();
    const { reason } = await gaveUp;
    assert.equal(reason, 'no greeting from the server');
    assert.equal(client.state, 'reconnecting');
    suite.proxy.swallow(false);
    await connected;
    assert.equal(client.state, 'ready');
  });

  test('sends made offline are queued and each is applied once after the reconnect', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const token = mintToken(unique('offline'));
    const editor = open({ token, url: suite.proxy.url });
    await editor.connect();
    await editor.join(room);
    const sheet = editor.sheet(sheetId, { room });
    await sheet.set('A1', 'first');

    // The server applies this edit, but its ack never comes back before the connection dies.
    suite.proxy.swallow(true);
    const inFlight = sheet.set('A2', 'sent, ack lost');
    await sleep(300);
    suite.proxy.block(true);
    suite.proxy.cut();
    suite.proxy.swallow(false);
    await next(editor, 'disconnected');
    const queued = [sheet.set('A3', 'queued 1'), sheet.set('A3', 'queued 2'), sheet.set('A4', 'queued 3')];
    // The in-flight one and one per cell wait in the outbox; the second A3 edit waits for the first.
    await until(() => editor._outbox.size === 3, 'three messages in the outbox');
    assert.notEqual(editor.state, 'ready');
    suite.proxy.block(false);
    const acks = await Promise.all([inFlight, ...queued]);
    assert.equal(new Set(acks.map((a) => a.seq)).size, acks.length);

    const history = async (cell) => (await rest(token, `/api/v1/sheets/${sheetId}/cells/${cell}/history`)).body.versions;
    assert.deepEqual((await history('A2')).map((v) => v.value), ['sent, ack lost']);
    assert.deepEqual((await history('A3')).map((v) => v.value), ['queued 1', 'queued 2']);
    assert.deepEqual((await history('A4')).map((v) => v.value), ['queued 3']);
    assert.equal(sheet.get('A3').value, 'queued 2');
    assert.equal(sheet.get('A3').version, 2);
  });

  test('a stale edit is refused with VERSION_CONFLICT and the cell shows the server current value', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const alice = open({ token: mintToken(unique('alice')) });
    const bob = open({ token: mintToken(unique('bob')) });
    await alice.connect();
    await bob.connect();
    await alice.join(room);
    await bob.join(room);
    const aliceSheet = alice.sheet(sheetId, { room });
    await aliceSheet.set('C1', 'alice 1');
    await aliceSheet.set('C1', 'alice 2');
    // Bob's model starts after those edits and is not loaded: he edits on version 0.
    const bobSheet = bob.sheet(sheetId, { room });
    const conflict = next(bobSheet, 'conflict');
    await assert.rejects(bobSheet.set('C1', 'bob'), (error) => {
      assert.equal(error.code, 'VERSION_CONFLICT');
      assert.equal(error.current.value, 'alice 2');
      assert.equal(error.current.version, 2);
      return true;
    });
    assert.equal((await conflict).current.value, 'alice 2');
    assert.equal(bobSheet.get('C1').value, 'alice 2');
    // Once loaded, the same edit goes through on the current version.
    await bobSheet.load();
    await bobSheet.set('C1', 'bob');
    assert.equal(bobSheet.get('C1').version, 3);
  });

  test('an expired token at connect (4401) is replaced through getToken()', async () => {
    const user = unique('late');
    let asked = 0;
    const client = open({
      token: mintToken(user, { ttl: -60 }),
      getToken: () => {
        asked += 1;
        return mintToken(user);
      },
    });
    const refused = next(client, 'disconnected');
    await client.connect();
    assert.equal((await refused).code, 4401);
    assert.equal(asked, 1);
    assert.equal(client.state, 'ready');
  });

  test('without a new token, a 4401 stops the client for good', async () => {
    const client = open({ token: mintToken(unique('late'), { ttl: -60 }) });
    const failed = next(client, 'auth_failed');
    await assert.rejects(client.connect(), (error) => error.code === 'CLOSED');
    await failed;
    assert.equal(client.stopReason, 'auth_failed');
  });

  test('token_expiring is answered with refresh_token from getToken()', async () => {
    const user = unique('refresh');
    const client = open({ token: mintToken(user, { ttl: 6 }), getToken: () => mintToken(user, { ttl: 3600 }) });
    const refreshed = next(client, 'token_refreshed', 10000);
    refreshed.catch(() => {});
    await client.connect();
    assert.ok((await refreshed).expires_at);
    await sleep(4000); // past the first token's exp: the connection must still be open
    assert.equal(client.state, 'ready');
  });

  test('when disconnected fires, the state already says the connection is down', async () => {
    const user = unique('watcher');
    /** @param {any} client */
    const statesAtDisconnect = (client) => {
      const seen = [];
      client.on('disconnected', () => seen.push(client.state));
      return seen;
    };
    // A network drop: reconnecting with backoff.
    const dropped = open({ token: mintToken(user), url: suite.proxy.url, connectTimeout: 1000 });
    await dropped.connect();
    const afterDrop = statesAtDisconnect(dropped);
    suite.proxy.cut();
    await next(dropped, 'disconnected');
    await dropped.ready();
    // A 4401 with a new token to come: reconnecting once it is there.
    const expired = open({ token: mintToken(user, { ttl: -60 }), getToken: () => mintToken(user) });
    const afterExpired = statesAtDisconnect(expired);
    await expired.connect();
    // A 4401 and no new token: closed for good.
    const refused = open({ token: mintToken(user, { ttl: -60 }) });
    const afterRefused = statesAtDisconnect(refused);
    await assert.rejects(refused.connect(), (error) => error.code === 'CLOSED');
    assert.deepEqual(afterDrop, ['reconnecting']);
    assert.deepEqual(afterExpired, ['reconnecting']);
    assert.deepEqual(afterRefused, ['closed']);
  });

  test('a range update goes out as one cells_update and arrives as one cells_updated', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const alice = open({ token: mintToken(unique('alice')) });
    const bob = open({ token: mintToken(unique('bob')) });
    await alice.connect();
    await bob.connect();
    await alice.join(room);
    await bob.join(room);
    const bobSheet = bob.sheet(sheetId, { room });
    const arrived = next(bob, 'cells_updated');
    const cells = [];
    for (let r = 1; r <= 10; r += 1) for (const c of 'ABCDEFGHIJ') cells.push({ cell_id: `${c}${r}`, value: `${c}${r}` });
    await alice.sheet(sheetId, { room }).setRange(cells);
    assert.equal((await arrived).cells.length, 100);
    assert.equal(bobSheet.get('J10').value, 'J10');
  });

  test('removed by an admin (4410): the client does not reconnect and says why', async () => {
    const client = open({ token: mintToken(unique('removed')) });
    await client.connect();
    const removed = next(client, 'removed');
    const { status } = await rest(mintToken(unique('admin'), { roles: ['admin'] }), `/api/v1/ws/connections/${client.session.connection_id}`, { method: 'DELETE' });
    assert.equal(status, 200);
    await removed;
    await sleep(300);
    assert.equal(client.state, 'closed');
    assert.equal(client.stopReason, 'removed');
  });

  test('a shutdown close (1012) reconnects at once, without backoff', async () => {
    const client = open({ token: mintToken(unique('restart')), backoff: { initial: 5000, max: 5000 } });
    await client.connect();
    const scheduled = next(client, 'reconnecting');
    // As the server's close after `server_shutdown` would arrive (a real one would stop the server).
    const socket = client._ws;
    client._detach();
    socket.close();
    client._lost(1012, 'server restart');
    assert.equal((await scheduled).delay, 0);
    await next(client, 'ready');
  });
});
