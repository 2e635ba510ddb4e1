// collab-client when two of its own needs overlap: a sheet load while the join of its room waits for
// its answer. Against a real server (started by tests/browser/test_client_library.py, like live.test.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { configured, mintToken, suiteOfClients, unique } from './helpers.js';

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

});
