// @pica/client: the TypeScript SDK of the Pica IM server (docs/sdk-js.md).

export { Backoff } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { directId, MemoryStorage, newClientMsgId, PicaClient } from "./client.js";
export type { ClientEvents, EventName, KeyValueStorage, OutboxItem, PicaClientOptions } from "./client.js";
export { AUTH_CLOSES, Connection, FINAL_CLOSES, TOKEN_EXPIRED, wsUrl } from "./connection.js";
export type { AnyFrame, ConnectionOptions, ConnectionState, WebSocketFactory, WebSocketLike } from "./connection.js";
export { CursorTracker, GapBuffer } from "./cursors.js";
export type { Ordered, Verdict } from "./cursors.js";
export { Disconnected, GaveUp, PicaError } from "./errors.js";
export { api, PicaHttp } from "./http.js";
export type { ApiOptions, FileInfo, PicaHttpOptions, Tokens } from "./http.js";
export * from "./frames.js";
