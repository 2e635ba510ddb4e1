// Test helpers: where the server is (from the environment the pytest runner sets), tokens signed
// with the test secret, a TCP proxy that can cut and block the network, and small waits.
import { createHmac, randomUUID } from 'node:crypto';
import net from 'node:net';
import { after, afterEach, before } from 'node:test';

import { CollabClient } from '../collab-client.js';

export const WS_URL = process.env.COLLAB_WS_URL ?? '';
export const HTTP_URL = process.env.COLLAB_HTTP_URL ?? '';
const SECRET = process.env.COLLAB_JWT_SECRET ?? '';
export const configured = Boolean(WS_URL && HTTP_URL && SECRET);

const b64url = (/** @type {string | Buffer} */ data) => Buffer.from(data).toString('base64url');

/**
 * An HS256 token the server accepts. @param {string} sub
 * @param {{roles?: string[], ttl?: number, username?: string, rooms?: string[]}} [options] ttl in seconds
 *   (negative: expired); rooms: the room patterns it allows (any room without)
 */
export function mintToken(sub, options = {}) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub, username: options.username ?? sub, roles: options.roles ?? ['editor'], iat: now, exp: now + (options.ttl ?? 3600), jti: randomUUID() };
  if (options.rooms) Object.assign(claims, { rooms: options.rooms });
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const signature = createHmac('sha256', SECRET).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${signature}`;
}

/** A unique id for rooms and sheets, so tests sharing a server never meet. @param {string} prefix */
export const unique = (prefix) => `${prefix}-${randomUUID().slice(0, 8)}`;

/** @param {Partial<import('../collab-client.js').ClientOptions> & {url?: string}} [options] */
export function newClient(options = {}) {
  return new CollabClient({ url: WS_URL, httpUrl: HTTP_URL, backoff: { initial: 50, max: 400 }, ...options });
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves when `check()` is true; fails after `timeout` ms. @param {() => boolean} check @param {string} what */
export async function until(check, what, timeout = 8000) {
  const end = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The next `type` event of `emitter`. @param {any} emitter @param {string} type */
export function next(emitter, type, timeout = 8000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${type} within ${timeout} ms`)), timeout);
    timer.unref(); // a wait nobody needs any more must not keep the test process alive
    emitter.once(type, (/** @type {any} */ value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}

/**
 * The server's side of one proxied connection, cut into its HTTP upgrade answer and then whole
 * WebSocket frames (unmasked, no extension: docs/protocol.md), so that a frame can be told by its
 * text. `push(chunk)` returns what is complete: `[bytes, text | null]`, text for a text frame.
 */
function serverFrames() {
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  return (/** @type {Buffer} */ chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    /** @type {[Buffer, string | null][]} */
    const parts = [];
    if (!upgraded) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return parts;
      parts.push([buffer.subarray(0, end + 4), null]);
      buffer = buffer.subarray(end + 4);
      upgraded = true;
    }
    while (buffer.length >= 2) {
      let length = buffer[1] & 0x7f;
      let head = 2;
      if (length === 126) [length, head] = [buffer.length >= 4 ? buffer.readUInt16BE(2) : -1, 4];
      else if (length === 127) [length, head] = [buffer.length >= 10 ? Number(buffer.readBigUInt64BE(2)) : -1, 10];
      if (length < 0 || buffer.length < head + length) break;
      const frame = buffer.subarray(0, head + length);
      parts.push([frame, (buffer[0] & 0x0f) === 1 ? frame.subarray(head).toString() : null]);
      buffer = buffer.subarray(head + length);
    }
    return parts;
  };
}

/**
 * A TCP proxy in front of the server: `cut()` drops every connection as a network failure would,
 * `block(true)` refuses new ones (the network is down), `swallow(true)` passes what the client sends
 * but drops what the server answers (the connection dies before the ack arrives), and
 * `swallowAfter(match)` does so from the frame after the first text frame `match` accepts.
 */
export async function startProxy() {
  const target = new URL(HTTP_URL);
  /** @type {Set<net.Socket>} */
  const sockets = new Set();
  let blocked = false;
  let swallowing = false;
  /** @type {((text: string) => boolean) | null} */
  let watch = null;
  const server = net.createServer((client) => {
    if (blocked) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    sockets.add(client);
    sockets.add(upstream);
    client.on('data', (data) => upstream.write(data));
    const frames = serverFrames();
    upstream.on('data', (data) => {
      for (const [bytes, text] of frames(data)) {
        if (swallowing) continue;
        client.write(bytes);
        if (watch && text !== null && watch(text)) [swallowing, watch] = [true, null];
      }
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on('close', end);
      socket.on('error', end);
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(undefined)));
  const port = /** @type {net.AddressInfo} */ (server.address()).port;
  return {
    url: `ws://127.0.0.1:${port}/api/v1/ws`,
    cut() {
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    /** @param {boolean} on */
    block(on) {
      blocked = on;
    },
    /** @param {boolean} on */
    swallow(on) {
      swallowing = on;
    },
    /** @param {(text: string) => boolean} match */
    swallowAfter(match) {
      watch = match;
    },
    /** The network up again, as a test that blocked or swallowed it ends, passed or failed. */
    restore() {
      blocked = false;
      swallowing = false;
      watch = null;
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}

/** Inside a `describe`: a network proxy started before its tests (`suite.proxy`, to cut and block the
 * connection) and `suite.open(options)`, a client closed after them, with the proxy. The network is
 * restored after each test: one that fails while it holds it down (its assertion throws before its
 * own `block(false)`) must fail alone, not leave the next test waiting forever to connect. */
export function suiteOfClients() {
  const clients = [];
  const suite = {
    /** @type {Awaited<ReturnType<typeof startProxy>>} */
    proxy: undefined,
    open(options) {
      const client = newClient(options);
      clients.push(client);
      return client;
    },
  };
  before(async () => {
    suite.proxy = await startProxy();
  });
  afterEach(() => {
    suite.proxy.restore();
  });
  after(async () => {
    for (const client of clients) client.close();
    await suite.proxy.close();
  });
  return suite;
}

/** GET/POST/DELETE on the REST API with a token. @param {string} token @param {string} path @param {RequestInit} [init] */
export async function rest(token, path, init = {}) {
  const response = await fetch(`${HTTP_URL}${path}`, { ...init, headers: { Authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
  return { status: response.status, body: await response.json().catch(() => null) };
}
