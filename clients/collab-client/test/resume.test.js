// collab-client's joins, reads and subscriptions that a dropped connection interrupted, against a real
// server (started by tests/browser/test_client_library.py, like live.test.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { configured, mintToken, next, sleep, suiteOfClients, unique } from './helpers.js';

const skip = configured ? false : 'COLLAB_WS_URL, COLLAB_HTTP_URL and COLLAB_JWT_SECRET are not set (run through pytest)';

/** Answered after every message the client sent before it: what those bring has arrived. @param {any} client */
const roundTrip = (client) => client.request({ type: 'ping' }, (/** @type {any} */ m) => m.type === 'pong');

describe('collab-client requests interrupted by a drop', { skip }, () => {
  const suite = suiteOfClients();
  const { open } = suite;

  /** Sends what the client sends on its way out, and answers nothing, until the connection is cut. */
  const interrupt = async (/** @type {any} */ client, /** @type {() => void} */ ask) => {
    suite.proxy.swallow(true);
    ask();
    await sleep(200);
    suite.proxy.block(true);
    suite.proxy.cut();
    suite.proxy.swallow(false);
    await next(client, 'disconnected');
    suite.proxy.block(false);
  };

  test('a join whose answer was lost with the connection is told once, by the resume', async () => {
    const room = unique('room');
    const client = open({ token: mintToken(unique('joiner')), url: suite.proxy.url, connectTimeout: 1000 });
    await client.connect();
    const told = [];
    client.on('joined', ({ room_id }) => told.push(['joined', room_id]));
    client.on('resumed', ({ room_id }) => told.push(['resumed', room_id]));
    /** @type {Promise<any>} */
    let joining = Promise.resolve();
    await interrupt(client, () => {
      joining = client.join(room);
    });
    assert.equal((await joining).joined, true);
    await client.ready();
    await roundTrip(client);
    assert.deepEqual(told, [['joined', room]]);
  });
});
