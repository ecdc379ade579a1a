// One WebSocket connection that stays up (docs/protocol.md sections 2.1, 4, 16, 20, 22): auth, heartbeats, requests
// matched by id/ref, reconnect with exponential backoff and full jitter, close codes obeyed. Knows nothing about
// conversations: PicaClient (client.ts) builds ordering, sync and the outbox on top of it.

import { Backoff } from "./backoff.js";
import { Disconnected, PicaError } from "./errors.js";
import type { Ready } from "./frames.js";

/** The WebSocket of the platform: browsers and React Native have one, Node >= 22 too (Node 20: --experimental-websocket). */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = new (url: string) => WebSocketLike;

export type ConnectionState = "connecting" | "ready" | "reconnecting" | "failed" | "stopped";

/** A server frame as it came: `t` names its type; unknown types and fields are the application's to ignore. */
export interface AnyFrame {
  t: string;
  [field: string]: any;
}

export interface ConnectionOptions {
  /** `ws://host:port/v1/ws` or `wss://…`. */
  url: string;
  token: string;
  device?: string;
  /** Every `ready` (first connect and each reconnect). */
  onReady?: (ready: Ready) => void;
  /** Server frames that are not responses: msg, receipt, typing, presence, contact, resync, call_*, stray errors. */
  onFrame?: (frame: AnyFrame) => void;
  onStatus?: (state: ConnectionState, detail?: string) => void;
  /** Every drop, with its close code (1006 when there was none). */
  onClose?: (code: number, reason: string) => void;
  /** The session is over (4501, 4506, or a 4502 renewToken could not fix): log in again. */
  onAuthLost?: (code: number) => void;
  /** A fresh access token after 4502, or null when the session cannot be renewed. */
  renewToken?: () => Promise<string | null>;
  backoff?: Backoff;
  requestTimeoutMs?: number;
  /** A socket not READY this long after it was opened is given up (a server or proxy that hangs). */
  readyTimeoutMs?: number;
  WebSocket?: WebSocketFactory;
  random?: () => number;
}

// Close codes (section 20): 4502 needs a renewed access token; 4501 and 4506 a new login; 4500, 4503, 4504 mean this
// client is wrong, retrying the same way fails again; 4505 (too many sessions) must wait for the user, or reconnecting
// would close another of their sessions. Everything else (4000-4499, 1000, 1006, 1009, ...) is reconnect-with-backoff.
export const TOKEN_EXPIRED = 4502;
export const AUTH_CLOSES: ReadonlySet<number> = new Set([4501, 4502, 4506]);
export const FINAL_CLOSES: ReadonlySet<number> = new Set([4500, 4503, 4504, 4505]);
const RESPONSE_TYPES: ReadonlySet<string> = new Set(["sent", "synced", "page", "done", "pong", "call_placed"]);
const OPEN = 1;

interface Pending {
  resolve: (frame: AnyFrame) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  t: string;
}

/** The URL of the WebSocket gateway of the server at an HTTP base URL ("" in a page: the page's own server). */
export function wsUrl(baseUrl = ""): string {
  if (!baseUrl) {
    const here = (globalThis as any).location;
    return `${here.protocol === "https:" ? "wss" : "ws"}://${here.host}/v1/ws`;
  }
  return `${baseUrl.replace(/^http/, "ws").replace(/\/+$/, "")}/v1/ws`;
}

export class Connection {
  url: string;
  token: string;
  readonly device: string;
  ready = false;
  /** The `ready` frame of the current connection. */
  readyFrame: Ready | null = null;
  private stopped = true;
  private attempt = 0;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private heartbeatMs = 25_000;
  private lastSent = 0;
  private lastRecv = 0;
  private readyAt = 0;
  private ws: WebSocketLike | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private tickTimer: ReturnType<typeof setInterval> | null = null;
  private authTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly options: ConnectionOptions;
  private readonly backoff: Backoff;
  private readonly WS: WebSocketFactory;
  private readonly wake = (): void => this.reconnectNow();

  constructor(options: ConnectionOptions) {
    this.options = options;
    this.url = options.url;
    this.token = options.token;
    this.device = options.device ?? "js";
    this.backoff = options.backoff ?? new Backoff();
    const WS = options.WebSocket ?? (globalThis as any).WebSocket;
    if (!WS) throw new Error("no WebSocket here: pass one (Node 20: node --experimental-websocket, or the ws package)");
    this.WS = WS;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    const g = globalThis as any;
    // A browser that comes back online, or a tab shown again, need not wait out the backoff.
    g.window?.addEventListener?.("online", this.wake);
    g.document?.addEventListener?.("visibilitychange", this.wake);
    this.connect();
  }

  stop(): void {
    this.stopped = true;
    const g = globalThis as any;
    g.window?.removeEventListener?.("online", this.wake);
    g.document?.removeEventListener?.("visibilitychange", this.wake);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown("logout");
    this.status("stopped");
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Send a frame that expects no answer (recv, typing, a call frame). False when not connected. */
  send(frame: object): boolean {
    if (!this.ready || !this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }

  /** Send a request with a fresh id; resolves with the response whose ref matches, rejects on `error` or a drop. */
  request<T extends AnyFrame = AnyFrame>(frame: AnyFrame | object, timeoutMs = this.options.requestTimeoutMs ?? 20_000):
    Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      const t = String((frame as AnyFrame).t);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PicaError("timeout", `no answer to '${t}'`, { retryable: true }));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (frame: AnyFrame) => void, reject, timer, t });
      if (!this.send({ ...frame, id })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new Disconnected());
      }
    });
  }

  /** Drop the socket now and reconnect (after the backoff): e.g. a dead network the OS has not noticed. */
  drop(reason = "dropped by the client"): void {
    if (this.ws) this.dropped(1006, reason);
  }

  // ------------------------------------------------------------------------------------------------ internals

  private status(state: ConnectionState, detail?: string): void {
    this.options.onStatus?.(state, detail);
  }

  private connect(): void {
    if (this.stopped) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.status(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.lastRecv = Date.now();
      ws.send(JSON.stringify({ t: "auth", token: this.token, device: this.device }));
      this.lastSent = Date.now();
    };
    ws.onmessage = (event) => this.onMessage(ws, event.data);
    ws.onclose = (event) => {
      if (ws === this.ws) this.dropped(event.code || 1006, event.reason || "");
    };
    ws.onerror = () => {}; // a close event follows
    this.authTimer = setTimeout(() => {
      if (ws === this.ws && !this.ready) this.dropped(4003, "no ready in time");
    }, this.options.readyTimeoutMs ?? 15_000);
  }

  private onMessage(ws: WebSocketLike, data: unknown): void {
    if (ws !== this.ws || typeof data !== "string") return;
    this.lastRecv = Date.now();
    let frame: AnyFrame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame.t !== "string") return;
    switch (frame.t) {
      case "ready":
        if (this.authTimer) clearTimeout(this.authTimer);
        this.ready = true;
        this.readyFrame = frame as unknown as Ready;
        this.readyAt = Date.now();
        this.heartbeatMs = Math.max(1000, (Number(frame.heartbeat) || 25) * 1000);
        if (this.tickTimer) clearInterval(this.tickTimer);
        this.tickTimer = setInterval(() => this.tick(), Math.min(1000, this.heartbeatMs / 4));
        this.status("ready");
        this.options.onReady?.(frame as unknown as Ready);
        return;
      case "ping":
        this.send({ t: "pong" });
        return;
      case "error": {
        const request = typeof frame.ref === "number" ? this.pending.get(frame.ref) : undefined;
        if (request) {
          this.settle(frame.ref);
          request.reject(new PicaError(frame.code, frame.message, {
            retryable: Boolean(frame.retryable),
            retryAfter: typeof frame.retry_after === "number" ? frame.retry_after : null,
          }));
        } else {
          this.options.onFrame?.(frame);
        }
        return;
      }
      default:
        if (RESPONSE_TYPES.has(frame.t) && typeof frame.ref === "number") {
          const request = this.pending.get(frame.ref);
          if (request) {
            this.settle(frame.ref);
            request.resolve(frame);
          }
          return;
        }
        this.options.onFrame?.(frame);
    }
  }

  private settle(id: number): void {
    const request = this.pending.get(id);
    if (!request) return;
    clearTimeout(request.timer);
    this.pending.delete(id);
  }

  private tick(): void {
    const now = Date.now();
    if (!this.ready) return;
    // Dead connection: nothing received for two heartbeats (the server writes at least a ping each heartbeat).
    if (now - this.lastRecv > 2 * this.heartbeatMs + 3000) {
      this.dropped(1006, "connection silent");
      return;
    }
    // Client duty (section 16): a frame at least every heartbeat, whatever the server sends.
    if (now - this.lastSent >= this.heartbeatMs) this.send({ t: "ping", id: this.nextId++ });
    // Stayed READY for a heartbeat: the next drop starts the backoff over.
    if (this.attempt > 0 && now - this.readyAt >= this.heartbeatMs) this.attempt = 0;
  }

  private teardown(reason: string): void {
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.authTimer) clearTimeout(this.authTimer);
    this.tickTimer = this.authTimer = null;
    this.ready = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, reason);
      } catch {
        // already closed
      }
    }
    const failed = [...this.pending.values()];
    this.pending.clear();
    for (const request of failed) {
      clearTimeout(request.timer);
      request.reject(new Disconnected());
    }
  }

  private dropped(code: number, reason: string): void {
    this.teardown(reason);
    if (this.stopped) return;
    this.options.onClose?.(code, reason);
    if (code === TOKEN_EXPIRED) {
      this.status("reconnecting");
      (this.options.renewToken ?? (async () => null))().then((token) => {
        if (this.stopped) return;
        if (token) {
          this.token = token;
          this.connect(); // at once, without backoff (section 18)
        } else {
          this.authLost(code);
        }
      }, () => this.scheduleReconnect()); // the server could not be reached: try again later
      return;
    }
    if (AUTH_CLOSES.has(code)) {
      this.authLost(code);
      return;
    }
    if (FINAL_CLOSES.has(code)) {
      this.stopped = true;
      this.status("failed", reason || `closed (${code})`);
      return;
    }
    this.scheduleReconnect();
  }

  private authLost(code: number): void {
    this.stopped = true;
    this.status("failed", "signed out");
    this.options.onAuthLost?.(code);
  }

  private scheduleReconnect(): void {
    const delay = this.backoff.delay(this.attempt, this.options.random);
    this.attempt += 1;
    this.status("reconnecting");
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  private reconnectNow(): void {
    if (this.stopped || this.ws || !this.retryTimer) return;
    if ((globalThis as any).document?.visibilityState === "hidden") return;
    this.connect();
  }
}
