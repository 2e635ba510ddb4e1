// Types of collab-client.js (hand-written: the module itself is plain JavaScript with JSDoc).

export declare const VERSION: string;

export declare const CloseCode: Readonly<{
  NORMAL: 1000; GOING_AWAY: 1001; ABNORMAL: 1006; POLICY: 1008; TOO_LARGE: 1009; INTERNAL: 1011;
  RESTART: 1012; TRY_AGAIN_LATER: 1013; SLOW_CONSUMER: 4008; AUTHENTICATION_FAILED: 4401;
  ORIGIN_REFUSED: 4403; REMOVED: 4410; TOO_MANY_CONNECTIONS: 4429;
}>;

export type ReconnectPolicy = 'now' | 'backoff' | 'token' | 'stop';
export declare function reconnectPolicy(code: number, closedByUs?: boolean): ReconnectPolicy;
/** Whether a `room_left` is a revoke (`reason: 'revoked'`) rather than the answer to a `leave_room` (`'left'`); without `reason` (an older server), whether it lacks a `client_msg_id`. */
export declare function revokesRoom(message: { reason?: string; client_msg_id?: string }): boolean;

export interface BackoffOptions { initial?: number; max?: number; factor?: number; jitter?: number }
export declare function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;

export type ClientState = 'idle' | 'connecting' | 'connected' | 'ready' | 'reconnecting' | 'offline' | 'closed';

/** A server message: `type` plus the fields docs/protocol.md lists for it. */
export interface ServerMessage { type: string; [field: string]: any }

export interface Ack { type: 'ack'; client_msg_id: string; room_id?: string; seq?: number }

export interface CellValue { value: any; formula: string | null; version: number; user_id?: string | null; username?: string }
export interface ShownCell extends CellValue { pending: boolean }
export interface CellEdit { cell_id: string; value: any; formula?: string | null }

export interface RoomUser {
  user_id: string; username: string; email?: string | null; room: string;
  status: 'online' | 'away' | 'busy' | string; cursor: { x: number; y: number; cell?: string | null } | null;
  last_seen: string;
}

export declare class CollabError extends Error {
  constructor(code: string, message: string, payload?: Record<string, any>);
  readonly code: string;
  readonly payload: Record<string, any>;
  /** VERSION_CONFLICT of a cell_update: the cell as the server has it. */
  readonly current?: { value: any; formula: string | null; version: number; user_id: string | null };
  /** VERSION_CONFLICT of a cells_update. */
  readonly conflicts?: { cell_id: string; current: CellValue }[];
  readonly retryAfter?: number;
  /** HTTP status, for REST errors. */
  readonly status?: number;
}

export declare class Emitter {
  on(type: string, listener: (value: any) => void): () => void;
  off(type: string, listener: (value: any) => void): void;
  once(type: string, listener: (value: any) => void): () => void;
  emit(type: string, value?: any): void;
}

export declare class Room extends Emitter {
  readonly client: CollabClient;
  readonly id: string;
  /** The newest room seq applied; a resume asks for what follows it. */
  seq: number | null;
  users: Map<string, RoomUser>;
  /** cell id -> (user id -> username) of who is typing there. */
  typing: Map<string, Map<string, string>>;
  activeSheets: string[];
  joined: boolean;
  readonly members: RoomUser[];
  moveCursor(x: number, y: number, cell?: string): boolean;
  startTyping(cellId: string): boolean;
  stopTyping(cellId: string): boolean;
  leave(): Promise<void>;
  on(type: 'presence', listener: (members: RoomUser[]) => void): () => void;
  on(type: 'typing', listener: (typing: Map<string, Map<string, string>>) => void): () => void;
  on(type: 'cursor', listener: (message: ServerMessage) => void): () => void;
  /** The server took this client out of the room (a refreshed token that no longer allows it). */
  on(type: 'revoked', listener: (info: { room_id: string; error: CollabError }) => void): () => void;
  on(type: string, listener: (value: any) => void): () => void;
}

export interface CellChange { cell_id: string; cell: ShownCell | undefined; source: 'local' | 'remote' | 'load' | 'conflict' | 'settled' }
/** `reset`: the edit was made on a room history the server no longer has (a `room_reset`), and was never sent; `current` is the reloaded cell, undefined when the server has none. */
export interface CellConflict { sheet_id: string; cell_id: string; attempted: any; current: CellValue; error: CollabError; reset?: boolean }

/** Opaque: the version (or this client's pending edit) an edit is made on. */
export interface EditBase { readonly __editBase?: never }

export declare class Sheet extends Emitter {
  readonly client: CollabClient;
  readonly id: string;
  readonly roomId: string;
  /** Cells as the server has them. */
  cells: Map<string, CellValue>;
  /** Set when the server took this client out of the sheet's room: edits reject with it until the room is joined again. */
  revoked: CollabError | null;
  get(cellId: string): ShownCell | undefined;
  load(): Promise<this>;
  /** What an edit starting now is made on; pass it to `set` as `base` when the value is committed later. */
  editBase(cellId: string): EditBase;
  set(cellId: string, value: any, options?: { formula?: string | null; base?: EditBase }): Promise<Ack>;
  setRange(cells: CellEdit[]): Promise<Ack>;
  on(type: 'change', listener: (change: CellChange) => void): () => void;
  on(type: 'conflict', listener: (conflict: CellConflict) => void): () => void;
  on(type: 'load', listener: (sheet: Sheet) => void): () => void;
  on(type: string, listener: (value: any) => void): () => void;
}

export interface ClientOptions {
  url?: string;
  httpUrl?: string;
  token?: string;
  getToken?: () => string | Promise<string>;
  WebSocket?: typeof WebSocket;
  backoff?: BackoffOptions;
  watchNetwork?: boolean;
  resumeTimeout?: number;
  /** ms a request (a join, `load()`, a subscription) waits for its answer once sent (default 15000); not counted while it waits for a connection or a new token */
  requestTimeout?: number;
  /** ms from opening a socket to the `connected` greeting before the attempt is retried (default 10000) */
  connectTimeout?: number;
}

export interface AiRun { requestId: string; result: Promise<Record<string, any>>; cancel(): Promise<Ack> }
export interface NotificationFilters { categories?: string[] | null; modules?: string[] | null; priorities?: string[] | null }

export declare class CollabClient extends Emitter {
  constructor(options?: ClientOptions);
  readonly url: string;
  readonly httpUrl: string;
  token: string | null;
  state: ClientState;
  /** The `connected` greeting of the current connection. */
  session: ServerMessage | null;
  rooms: Map<string, Room>;
  sheets: Map<string, Sheet>;
  /** Unread notifications by id, from the subscription and live events; a direct message as it arrives, as the subscription would list it. */
  unread: Map<string, Record<string, any>>;
  stopReason: string | null;
  /** Edits not yet acknowledged: `set()`/`setRange()` of every sheet and `cell_update`/`cells_update` sent with `send()`, queued, waiting behind an earlier edit of the same cell, held by a `room_reset`, or sent and unanswered. `queue` fires when it changes. */
  readonly pendingEdits: number;
  nextId(): string;
  connect(): Promise<this>;
  ready(): Promise<this>;
  close(): void;
  join(roomId: string): Promise<Room>;
  leave(roomId: string): Promise<void>;
  sheet(sheetId: string, options: { room: string }): Sheet;
  send(message: Record<string, any>): Promise<Ack>;
  sendVolatile(message: Record<string, any>): boolean;
  /** Resolves with the first message `match` accepts; `timeout` (default `requestTimeout`) counts from when it is sent. */
  request(message: Record<string, any>, match: (message: ServerMessage) => boolean, timeout?: number): Promise<ServerMessage>;
  /** Asks getToken() for a token and swaps it in with `refresh_token` (as `token_expiring` does); null when getToken() has no new one, or when a 4401 came while it was on its way (that token reconnects the client). getToken() is asked once at a time: a need for a token meanwhile shares the call. */
  refreshToken(): Promise<ServerMessage | null>;
  /** Once acknowledged, the user's own entry in every room has the status (the server never tells it back to this connection). */
  setStatus(status: 'online' | 'away' | 'busy'): Promise<Ack>;
  subscribeNotifications(filters?: NotificationFilters): Promise<ServerMessage>;
  markNotificationRead(notificationId: string): Promise<Ack>;
  requestAi(params: { query: string; sheetId: string; context?: Record<string, any> | null; requestId?: string }, onEvent?: (event: ServerMessage) => void): AiRun;
  uploadFile(file: Blob & { name?: string }, options?: { fileId?: string; filename?: string; roomId?: string; onProgress?: (progress: { loaded: number; total: number }) => void }): Promise<Record<string, any>>;
  rest(path: string, init?: { method?: string; body?: any; raw?: false }): Promise<any>;
  rest(path: string, init: { method?: string; body?: any; raw: true }): Promise<Response>;
  on(type: 'state', listener: (change: { state: ClientState; previous: ClientState }) => void): () => void;
  /** The connection closed; `state` already says so (`reconnecting`, `offline` or `closed`). */
  on(type: 'disconnected', listener: (info: { code: number; reason: string; policy: ReconnectPolicy }) => void): () => void;
  on(type: 'reconnecting', listener: (info: { attempt: number; delay: number }) => void): () => void;
  on(type: 'joined' | 'resumed', listener: (info: { room_id: string; seq: number | null }) => void): () => void;
  /** A resume found the server's history of the room is not the one this client saw: the room is joined afresh and its sheets reloaded. */
  on(type: 'room_reset', listener: (info: { room_id: string }) => void): () => void;
  /** The server took this client out of a room it did not leave (a `room_left` with reason `revoked`: a refreshed token that no longer allows it); the room is forgotten. */
  on(type: 'room_revoked', listener: (info: { room_id: string; seq: number; error: CollabError }) => void): () => void;
  on(type: 'closed', listener: (info: { reason: string; detail: any }) => void): () => void;
  on(type: 'notifications', listener: (unread: Record<string, any>[]) => void): () => void;
  /** The queue changed: `size` sends awaiting their ack, `edits` = `pendingEdits`. */
  on(type: 'queue', listener: (info: { size: number; edits: number }) => void): () => void;
  on(type: 'server_error', listener: (error: CollabError) => void): () => void;
  /** A `refresh_token` was refused (a bad token, or another user's); the connection keeps its old token. */
  on(type: 'token_refresh_failed', listener: (error: CollabError) => void): () => void;
  /** Every server message by its `type` (`cell_updated`, `cursor_moved`, ...), and all of them as `message`. */
  on(type: string, listener: (message: ServerMessage) => void): () => void;
}
