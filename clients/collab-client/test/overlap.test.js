// collab-client when two of its own needs overlap: a sheet load while the join of its room waits for
// its answer, a token expiring while the refresh begun for it still waits for getToken(). Against a
// real server (started by tests/browser/test_client_library.py, like live.test.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { configured, mintToken, next, sleep, suiteOfClients, unique, until } from './helpers.js';

const skip = configured ? false : 'COLLAB_WS_URL, COLLAB_HTTP_URL and COLLAB_JWT_SECRET are not set (run through pytest)';

/** Answered after every message the client sent before it: what those bring has arrived. @param {any} client */
const roundTrip = (client) => client.request({ type: 'ping' }, (/** @type {any} */ m) => m.type === 'pong');

describe('collab-client when its own requests overlap', { skip }, () => {
  const suite = suiteOfClients();
  const { open } = suite;

  test('a load while the join of its room waits for its answer waits for that join: one join_room, one joined', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const client = open({ token: mintToken(unique('loader')) });
    await client.connect();
    let joined = 0;
    let answers = 0;
    client.on('joined', ({ room_id }) => room_id === room && (joined += 1));
    client.on('room_state', (m) => m.room_id === room && (answers += 1)); // one per join_room sent
    const joining = client.join(room);
    const loading = client.sheet(sheetId, { room }).load();
    await Promise.all([joining, loading]);
    await roundTrip(client);
    assert.equal(answers, 1, 'one join_room sent');
    assert.equal(joined, 1, 'joined told once');
    assert.equal(client.rooms.get(room)?.joined, true);
  });

  test('a join asked for again while the first waits for its answer shares it', async () => {
    const room = unique('room');
    const client = open({ token: mintToken(unique('joiner')) });
    await client.connect();
    let joined = 0;
    let answers = 0;
    client.on('joined', ({ room_id }) => room_id === room && (joined += 1));
    client.on('room_state', (m) => m.room_id === room && (answers += 1));
    const [first, second] = await Promise.all([client.join(room), client.join(room)]);
    await roundTrip(client);
    assert.equal(first, second);
    assert.equal(answers, 1, 'one join_room sent');
    assert.equal(joined, 1, 'joined told once');
  });

  test('a 4401 while the refresh begun by token_expiring waits for getToken() shares that one fetch', async () => {
    const user = unique('slow-token');
    const room = unique('room');
    const sheetId = unique('sheet');
    // The person has no new token yet: the app asks them, and answers when they paste one.
    /** @type {(token: string) => void} */
    let paste = () => {};
    const pasted = new Promise((resolve) => (paste = resolve));
    let asked = 0;
    const client = open({
      token: mintToken(user, { ttl: 3 }), // token_expiring after 1.5 s, the close with 4401 at 3 s at most
      getToken: () => {
        asked += 1;
        return pasted;
      },
    });
    const failures = [];
    client.on('token_refresh_failed', (error) => failures.push(error));
    await client.connect();
    await client.join(room);
    await until(() => asked > 0, 'a new token asked for on token_expiring');
    const closed = await next(client, 'disconnected', 8000);
    assert.equal(closed.code, 4401);
    await sleep(100);
    assert.equal(asked, 1, 'the 4401 waits for the token already asked for, not a second one');

    const fresh = mintToken(user);
    paste(fresh);
    await client.ready();
    assert.equal(client.token, fresh);
    const sheet = client.sheet(sheetId, { room });
    await sheet.set('A1', 'after the new token');
    await roundTrip(client);
    assert.equal(asked, 1);
    assert.deepEqual(failures, []);
  });
});
