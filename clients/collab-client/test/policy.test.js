// The client's decisions without a server: reconnect, backoff, and whether a `room_left` is a revoke.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CloseCode, Emitter, backoffDelay, reconnectPolicy, revokesRoom } from '../collab-client.js';

test('close codes map to the reconnect table of docs/protocol.md', () => {
  assert.equal(reconnectPolicy(CloseCode.RESTART), 'now');
  for (const code of [CloseCode.INTERNAL, CloseCode.TRY_AGAIN_LATER, CloseCode.SLOW_CONSUMER, CloseCode.ABNORMAL, CloseCode.POLICY]) {
    assert.equal(reconnectPolicy(code), 'backoff', `code ${code}`);
  }
  assert.equal(reconnectPolicy(CloseCode.AUTHENTICATION_FAILED), 'token');
  for (const code of [CloseCode.REMOVED, CloseCode.TOO_LARGE, CloseCode.TOO_MANY_CONNECTIONS, CloseCode.ORIGIN_REFUSED]) {
    assert.equal(reconnectPolicy(code), 'stop', `code ${code}`);
  }
  assert.equal(reconnectPolicy(CloseCode.ABNORMAL, true), 'stop', 'a close the application asked for');
});

test('a room_left is a revoke by its reason; only a frame without one falls back to its client_msg_id', () => {
  const frame = { type: 'room_left', room_id: 'r', seq: 3 };
  assert.equal(revokesRoom({ ...frame, reason: 'revoked' }), true);
  assert.equal(revokesRoom({ ...frame, reason: 'revoked', client_msg_id: 'm-1' }), true);
  assert.equal(revokesRoom({ ...frame, reason: 'left', client_msg_id: 'm-1' }), false);
  assert.equal(revokesRoom({ ...frame, reason: 'left' }), false, 'a leave_room sent without an id is no revoke');
  // A server older than `reason`: only its answer to a `leave_room` echoes the message's id.
  assert.equal(revokesRoom(frame), true);
  assert.equal(revokesRoom({ ...frame, client_msg_id: 'm-1' }), false);
});

test('backoff grows exponentially, stays under its cap, and jitter only shortens it', () => {
  const options = { initial: 100, max: 2000, factor: 2, jitter: 0.5 };
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, options, () => 0)), [100, 200, 400, 800, 1600, 2000]);
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const delay = backoffDelay(attempt, options);
    const full = Math.min(2000, 100 * 2 ** attempt);
    assert.ok(delay <= full && delay >= full / 2, `attempt ${attempt}: ${delay}`);
  }
});

test('the emitter delivers in order, once() fires once, and on() returns its own removal', () => {
  const emitter = new Emitter();
  const seen = [];
  const off = emitter.on('x', (v) => seen.push(['on', v]));
  emitter.once('x', (v) => seen.push(['once', v]));
  emitter.emit('x', 1);
  off();
  emitter.emit('x', 2);
  assert.deepEqual(seen, [['on', 1], ['once', 1]]);
});
