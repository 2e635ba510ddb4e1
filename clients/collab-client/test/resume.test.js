// collab-client's joins, reads and subscriptions that a dropped connection interrupted, against a real
// server (started by tests/browser/test_client_library.py, like live.test.js).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { configured, mintToken, next, sleep, suiteOfClients, unique, until } from './helpers.js';

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

  test('requests waiting while a new token is fetched after a 4401 time out only once they are sent', async () => {
    const user = unique('slow-token');
    const room = unique('room');
    const sheetId = unique('sheet');
    /** @type {((token: string) => void) | null} */
    let answer = null;
    const client = open({
      token: mintToken(user),
      url: suite.proxy.url,
      requestTimeout: 2000,
      getToken: () => new Promise((resolve) => (answer = resolve)),
    });
    await client.connect();
    await client.join(room);
    await client.sheet(sheetId, { room }).set('A1', 'there');

    // A join goes out and its answer never comes back: the token expires first (4401, as the server
    // closes for it), and a read is asked for as the connection ends.
    const other = unique('room');
    suite.proxy.swallow(true);
    const joining = client.join(other);
    await sleep(200);
    suite.proxy.swallow(false);
    /** @type {Promise<any>} */
    let loading = Promise.resolve();
    client.once('disconnected', () => {
      loading = client.request({ type: 'load_sheet', sheet_id: sheetId }, (m) => m.type === 'sheet_state' && m.sheet_id === sheetId);
    });
    const socket = client._ws;
    client._detach();
    socket.close();
    client._lost(4401, 'token expired');
    await until(() => answer !== null, 'the client asking for a new token');
    await sleep(2500); // the person takes longer to paste a new token than a request may wait for its answer
    /** @type {(token: string) => void} */ (answer)(mintToken(user));

    assert.equal((await joining).id, other);
    assert.equal((await loading).cells.A1.value, 'there');
    assert.equal(client.rooms.get(other)?.joined, true);
  });

  test('a subscription whose answer was lost with the connection is sent once by the resume', async () => {
    const client = open({ token: mintToken(unique('subscriber')), url: suite.proxy.url, connectTimeout: 1000 });
    await client.connect();
    let replies = 0;
    client.on('notifications_subscribed', () => (replies += 1));
    /** @type {Promise<any>} */
    let subscribing = Promise.resolve();
    await interrupt(client, () => {
      subscribing = client.subscribeNotifications({});
    });
    assert.equal((await subscribing).type, 'notifications_subscribed');
    await roundTrip(client);
    assert.equal(replies, 1);
  });

  test('a subscription asked for while disconnected is sent once after the reconnect', async () => {
    const client = open({ token: mintToken(unique('subscriber')), url: suite.proxy.url, connectTimeout: 1000 });
    await client.connect();
    let replies = 0;
    client.on('notifications_subscribed', () => (replies += 1));
    suite.proxy.block(true);
    suite.proxy.cut();
    await next(client, 'disconnected');
    const subscribing = client.subscribeNotifications({});
    suite.proxy.block(false);
    assert.equal((await subscribing).type, 'notifications_subscribed');
    await roundTrip(client);
    assert.equal(replies, 1);
  });

  test('an AI request acknowledged before a drop brings its answer after the reconnect', async () => {
    const room = unique('room');
    const sheetId = unique('sheet');
    const client = open({ token: mintToken(unique('analyst')), url: suite.proxy.url, connectTimeout: 1000 });
    await client.connect();
    await client.join(room);
    const sheet = client.sheet(sheetId, { room });
    for (const [cell, value] of [['A1', 'Sales'], ['A2', 10], ['A3', 20], ['A4', 30]]) await sheet.set(cell, value);

    // The request is acknowledged; every step after that is lost with the connection, its answer too.
    const acks = [];
    client.on('ack', (/** @type {any} */ ack) => acks.push(ack));
    suite.proxy.swallowAfter((text) => JSON.parse(text).type === 'ack');
    /** @type {any[]} */
    const steps = [];
    const run = client.requestAi({ query: 'Sum it up', sheetId }, (event) => steps.push(event));
    await until(() => acks.length === 1, 'the ack of the request');
    await sleep(300); // the analysis runs on, and ends, with nobody to hear it
    assert.deepEqual(steps.map((event) => event.event_type), ['ai_start']);
    suite.proxy.block(true);
    suite.proxy.cut();
    suite.proxy.swallow(false);
    await next(client, 'disconnected');
    suite.proxy.block(false);

    let answer = null;
    run.result.then((/** @type {any} */ result) => (answer = result));
    await until(() => answer !== null, 'the answer of the request');
    assert.match(/** @type {any} */ (answer).result, /3 values, sum 60, mean 20, min 10, max 30/);
    const seqs = steps.map((event) => event.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
    assert.equal(new Set(seqs).size, seqs.length); // each step once
    assert.equal(steps.at(-1).event_type, 'ai_complete');
  });
});
