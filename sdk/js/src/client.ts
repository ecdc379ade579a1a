// PicaClient: a client that stays connected, with the semantics of the Python SDK (pica/client/sdk.py). It logs in,
// keeps the session's tokens fresh, reconnects with backoff and full jitter, syncs from its cursors after every
// `ready`, re-sends what was not acknowledged with the same client_msg_id, and hands each message to the application
// once, in seq order per conversation (docs/protocol.md sections 8, 9, 18, 22).

import { Backoff } from "./backoff.js";
import { AnyFrame, Connection, ConnectionState, wsUrl, WebSocketFactory } from "./connection.js";
import { CursorTracker, GapBuffer, Verdict } from "./cursors.js";
import { Disconnected, GaveUp, PicaError } from "./errors.js";
import type {
  CallPlaced, Contact, Invitation, Msg, Page, Presence, Ready, Receipt, Resync, Sent, Synced, Typing,
} from "./frames.js";
import { FileInfo, PicaHttp, Tokens } from "./http.js";

/** localStorage's shape: where cursors and unacknowledged sends are kept across restarts. */
export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** A KeyValueStorage in memory (the default: nothing survives the process). */
export class MemoryStorage implements KeyValueStorage {
  private readonly items = new Map<string, string>();
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
}

/** A send, recall or edit not acknowledged yet; kept (and persisted) until its `sent`, re-sent after every ready. */
export interface OutboxItem {
  client_msg_id: string;
  /** The frame, without `id`: re-sent unchanged, so the server stores it once (section 8.2). */
  frame: { t: "send" | "recall" | "edit" | "react" | "unpreview"; client_msg_id: string; [field: string]: unknown };
  /** Where it goes (for a send to a user: `d:<low>:<high>`), known before the ack. */
  conversation_id: string;
  /** Local time it was queued, ms. */
  queued_at: number;
}

export interface ClientEvents {
  /** READY and synced to completion (first connect and each reconnect). */
  connected: { userId: number; device: string; reconnect: boolean; ready: Ready };
  disconnected: { code: number; reason: string };
  status: { state: ConnectionState; detail?: string };
  /** A message, once, in seq order per conversation; never one this client sent (see `ack`). */
  message: { message: Msg; source: "live" | "sync" };
  /** One of this client's sends, recalls or edits is stored; `message` is it as the server stores it. */
  ack: { item: OutboxItem; sent: Sent; message: Msg };
  /** A send, recall or edit was refused for good (not retryable): it left the outbox. */
  sendFailed: { item: OutboxItem; error: PicaError };
  receipt: Receipt;
  presence: Presence;
  typing: Typing;
  contact: Contact;
  invitation: Invitation;
  /** A call frame from the server (call_incoming, call_ringing, call_accepted, call_candidate, call_ended). */
  call: AnyFrame;
  resync: Resync;
  /** An `error` frame that answers no request of ours (section 6.11). */
  error: AnyFrame;
  /** Any other server frame (a frame type newer than this SDK). */
  frame: AnyFrame;
  /** The session is over (4501, 4506, or an expired token that could not be renewed): log in again. */
  authLost: { code: number };
}

export type EventName = keyof ClientEvents;

export interface PicaClientOptions {
  /** The server's HTTP base URL, e.g. `http://127.0.0.1:8080` ("" in a page served by the server). */
  url: string;
  username?: string;
  password?: string;
  /** An access token (or a bot's API key) instead of a username and password. */
  token?: string;
  refreshToken?: string;
  /** The user id, when known before `ready` (from a saved login): cursors load at once. */
  userId?: number;
  device?: string;
  /** Where cursors and the outbox persist, under `<storagePrefix><user_id>.` (default: memory). */
  storage?: KeyValueStorage;
  storagePrefix?: string;
  /** Called with every new pair of tokens. */
  onTokens?: (tokens: Tokens) => void;
  /** See PicaHttpOptions.newerTokens. */
  newerTokens?: () => Tokens | null;
  /** Run after each `ready`, before the sync (e.g. start cursors of new conversations from the conversation list). */
  beforeSync?: (ready: Ready) => Promise<void> | void;
  /** Milliseconds a live message that skips ahead waits for the missing ones before a sync (section 8.6; 0: at once). */
  gapWaitMs?: number;
  /** Send `recv` (delivery acks) for what was handed over, batched (default true). */
  autoReceive?: boolean;
  backoff?: Backoff;
  WebSocket?: WebSocketFactory;
  random?: () => number;
  /** Messages per sync page asked for (the server caps it). */
  syncLimit?: number;
}

type Listener<K extends EventName> = (event: ClientEvents[K]) => void;

const RECV_DELAY_MS = 400;
const RETRY_CAP_MS = 2000;

/** A client message id: 128 random bits (crypto.getRandomValues exists in browsers, Node and Hermes). */
export function newClientMsgId(prefix = "js-"): string {
  const bytes = new Uint8Array(16);
  (globalThis as any).crypto.getRandomValues(bytes);
  return prefix + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The id of the 1:1 conversation of two users (section 1.1). */
export function directId(a: number, b: number): string {
  return a <= b ? `d:${a}:${b}` : `d:${b}:${a}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class PicaClient {
  readonly http: PicaHttp;
  userId: number;
  readonly device: string;
  /** Cursors of section 8.6; the application may start or drop one (startAt, drop), then persist(). */
  cursors = new CursorTracker();
  /** The `ready` of the current connection, or null while disconnected. */
  ready: Ready | null = null;
  private conn: Connection | null = null;
  private readonly options: PicaClientOptions;
  private readonly storage: KeyValueStorage;
  private readonly prefix: string;
  private readonly backoff: Backoff;
  private held: GapBuffer<Msg> = new GapBuffer(this.cursors);
  private loadedFor = 0;
  private readonly listeners = new Map<EventName, Set<Listener<any>>>();
  private readonly outbox = new Map<string, OutboxItem>();
  private readonly waiters = new Map<string, { resolve: (sent: Sent) => void; reject: (error: Error) => void }[]>();
  private readonly inflight = new Set<string>();
  /** Our ids whose `sent` was a GAP: the sync that fills it returns them, and they are ours, not news. */
  private readonly ownGapIds = new Set<string>();
  private readonly gapTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private readonly recvQueue = new Set<string>();
  private readonly recvSent = new Map<string, number>();
  private recvTimer: ReturnType<typeof setTimeout> | null = null;
  private saveTimer: ReturnType<typeof setTimeout> | null = null;
  private syncing: Promise<void> | null = null;
  private syncAgain = false;
  private lastSyncCompleted = false;
  private everConnected = false;
  private stopped = false;
  private failure: Error | null = null;

  constructor(options: PicaClientOptions) {
    if (!options.token && !(options.username && options.password)) {
      throw new Error("give a token, or a username and a password");
    }
    this.options = options;
    this.http = new PicaHttp({
      baseUrl: options.url, token: options.token ?? null, refreshToken: options.refreshToken ?? null,
      onTokens: options.onTokens, newerTokens: options.newerTokens,
    });
    this.userId = options.userId ?? 0;
    this.device = options.device ?? newClientMsgId("js-").slice(0, 11);
    this.storage = options.storage ?? new MemoryStorage();
    this.prefix = options.storagePrefix ?? "pica.";
    this.backoff = options.backoff ?? new Backoff();
    if (this.userId) this.load(this.userId);
  }

  // ------------------------------------------------------------------------------------------------ lifecycle

  /** Log in if needed and connect; resolves once connected and synced, rejects if the server refuses for good. */
  async start(timeoutMs = 30_000): Promise<void> {
    this.stopped = false;
    if (!this.http.token) {
      const tokens = await this.http.login(this.options.username!, this.options.password!);
      if (tokens.user_id && !this.userId) {
        this.userId = tokens.user_id;
        this.load(this.userId);
      }
    }
    if (!this.conn) {
      this.conn = new Connection({
        url: wsUrl(this.options.url),
        token: this.http.token!,
        device: this.device,
        backoff: this.backoff,
        WebSocket: this.options.WebSocket,
        random: this.options.random,
        onReady: (ready) => void this.onReady(ready),
        onFrame: (frame) => this.onFrame(frame),
        onStatus: (state, detail) => this.emit("status", { state, detail }),
        onClose: (code, reason) => this.onClose(code, reason),
        onAuthLost: (code) => void this.onAuthLost(code),
        renewToken: () => this.renewToken(),
      });
      this.conn.start();
    }
    await this.waitConnected(timeoutMs);
  }

  /** Stop: close the socket, keep the cursors and the outbox (persisted), reject nothing that is queued. */
  close(): void {
    this.stopped = true;
    this.conn?.stop();
    this.conn = null;
    this.ready = null;
    for (const timer of this.gapTimers.values()) clearTimeout(timer);
    this.gapTimers.clear();
    if (this.recvTimer) clearTimeout(this.recvTimer);
    this.recvTimer = null;
    this.persist();
    const failed = new GaveUp(1000, "client closed");
    for (const [id, waiters] of this.waiters) {
      for (const waiter of waiters) waiter.reject(failed);
      this.waiters.delete(id);
    }
  }

  /** End the session on the server, then close. */
  async logout(): Promise<void> {
    try {
      await this.http.logout();
    } finally {
      this.close();
    }
  }

  /** The socket underneath: requests that must fail at once while disconnected (call signalling), or null. */
  get connection(): Connection | null {
    return this.conn;
  }

  get connected(): boolean {
    return this.ready !== null;
  }

  /** Resolves when connected and synced; rejects if the client gave up or after `timeoutMs`. */
  waitConnected(timeoutMs = 30_000): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ready) return Promise.resolve(); // set once the first sync of this connection completed
    return new Promise((resolve, reject) => {
      const done = (error?: Error): void => {
        clearTimeout(timer);
        offConnected();
        offLost();
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(() => done(new PicaError("timeout", "not connected in time", { retryable: true })),
        timeoutMs);
      const offConnected = this.on("connected", () => done());
      const offLost = this.on("status", ({ state }) => {
        if (state === "failed" || state === "stopped") done(this.failure ?? new GaveUp(0, "the client stopped"));
      });
    });
  }

  // ------------------------------------------------------------------------------------------------ events

  /** Call `listener` for every event of this kind; returns a function that removes it. */
  on<K extends EventName>(kind: K, listener: Listener<K>): () => void {
    let set = this.listeners.get(kind);
    if (!set) {
      set = new Set();
      this.listeners.set(kind, set);
    }
    set.add(listener);
    return () => set!.delete(listener);
  }

  /** The next event of a kind (that `filter` accepts), or a timeout error. */
  next<K extends EventName>(kind: K, { timeoutMs = 10_000, filter }: {
    timeoutMs?: number; filter?: (event: ClientEvents[K]) => boolean;
  } = {}): Promise<ClientEvents[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new PicaError("timeout", `no '${kind}' event in time`));
      }, timeoutMs);
      const off = this.on(kind, (event) => {
        if (filter && !filter(event)) return;
        clearTimeout(timer);
        off();
        resolve(event);
      });
    });
  }

  private emit<K extends EventName>(kind: K, event: ClientEvents[K]): void {
    for (const listener of [...(this.listeners.get(kind) ?? [])]) {
      try {
        listener(event);
      } catch (exc) {
        // One broken listener must not stop delivery to the others, nor the client's own bookkeeping.
        setTimeout(() => {
          throw exc;
        }, 0);
      }
    }
  }

  // ------------------------------------------------------------------------------------------------ persistence

  private key(name: string): string {
    return `${this.prefix}${this.userId}.${name}`;
  }

  private load(userId: number): void {
    if (this.loadedFor === userId) return;
    this.loadedFor = userId;
    const read = (name: string): any => {
      try {
        const raw = this.storage.getItem(this.key(name));
        return raw === null ? null : JSON.parse(raw);
      } catch {
        return null;
      }
    };
    const saved = read("cursors");
    this.cursors = new CursorTracker(saved && typeof saved === "object" ? saved : {});
    this.held = new GapBuffer(this.cursors);
    const outbox = read("outbox");
    if (Array.isArray(outbox)) {
      for (const item of outbox) {
        if (item && typeof item.client_msg_id === "string" && item.frame) this.outbox.set(item.client_msg_id, item);
      }
    }
  }

  /** Write the cursors and the outbox to the storage now. */
  persist(): void {
    if (!this.userId) return;
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    try {
      this.storage.setItem(this.key("cursors"), JSON.stringify(this.cursors.snapshot()));
      this.storage.setItem(this.key("outbox"), JSON.stringify([...this.outbox.values()]));
    } catch {
      // storage full or disabled: the client still works, it just forgets more on restart
    }
  }

  private persistSoon(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.persist(), 300);
  }

  /** Sends, recalls and edits not acknowledged yet (those restored from the storage included), oldest first. */
  pending(): OutboxItem[] {
    return [...this.outbox.values()];
  }

  // ------------------------------------------------------------------------------------------------ connection

  private async renewToken(): Promise<string | null> {
    const token = await this.http.renew();
    if (token) return token;
    if (!this.options.password) return null;
    const tokens = await this.http.login(this.options.username!, this.options.password);
    return tokens.token;
  }

  private onAuthLost(code: number): void {
    if (this.options.password && !this.stopped) {
      // A rejected token or an ended session: a client that has the password logs in again (like the Python SDK).
      this.http.login(this.options.username!, this.options.password).then((tokens) => {
        if (this.stopped || !this.conn) return;
        this.conn.token = tokens.token;
        this.conn.start();
      }, (exc) => this.giveUp(code, `login failed: ${exc instanceof Error ? exc.message : String(exc)}`));
      return;
    }
    this.giveUp(code, "the session is over: log in again");
  }

  private giveUp(code: number, message: string): void {
    this.failure = new GaveUp(code, message);
    this.emit("authLost", { code });
    this.emit("status", { state: "failed", detail: message });
  }

  private onClose(code: number, reason: string): void {
    this.ready = null;
    this.inflight.clear();
    this.recvSent.clear();
    this.persist();
    if (code >= 4500 && code < 5000 && !(code === 4501 || code === 4502 || code === 4506)) {
      this.failure = new GaveUp(code, `the server refused the connection (${code}: ${reason})`);
    }
    this.emit("disconnected", { code, reason });
  }

  private async onReady(ready: Ready): Promise<void> {
    const conn = this.conn;
    this.failure = null;
    if (ready.user_id !== this.userId) {
      this.userId = ready.user_id;
      this.load(ready.user_id);
    }
    try {
      await this.options.beforeSync?.(ready);
    } catch {
      // the application's preparation failed: sync from what we have
    }
    if (this.conn !== conn || !conn?.ready) return;
    const synced = await this.syncAll();
    if (this.conn !== conn || !conn.ready || !synced) return;
    this.ready = ready;
    for (const item of this.outbox.values()) this.transmit(item);
    this.flushRecv();
    const reconnect = this.everConnected;
    this.everConnected = true;
    this.emit("connected", { userId: ready.user_id, device: ready.device, reconnect, ready });
  }

  private onFrame(frame: AnyFrame): void {
    switch (frame.t) {
      case "msg":
        this.onLive(frame as unknown as Msg);
        return;
      case "resync":
        void this.syncAll(); // the cluster bus was interrupted: the sync brings what was not pushed
        this.emit("resync", frame as unknown as Resync);
        return;
      case "receipt":
      case "presence":
      case "typing":
      case "contact":
      case "invitation":
      case "error":
        this.emit(frame.t, frame as any);
        return;
      default:
        if (frame.t.startsWith("call_")) this.emit("call", frame);
        else this.emit("frame", frame);
    }
  }

  // ------------------------------------------------------------------------------------------------ ordering

  private onLive(msg: Msg): void {
    const verdict = this.cursors.accept(msg);
    if (verdict === "new") {
      this.handOver(msg, "live");
      this.releaseHeld(msg.conversation_id);
    } else if (verdict === "gap") {
      if (this.held.hold(msg)) this.waitForLate(msg.conversation_id);
      else void this.syncAll(); // the sync brings this message and the ones before it
    }
  }

  /** A NEW message: to the application, unless it is one of this client's own (its `ack` event stands for it). */
  private handOver(msg: Msg, source: "live" | "sync"): void {
    this.persistSoon();
    this.queueRecv(msg.conversation_id);
    if (msg.sender === this.userId && (this.outbox.has(msg.client_msg_id) || this.ownGapIds.delete(msg.client_msg_id))) {
      return;
    }
    this.emit("message", { message: msg, source });
  }

  private releaseHeld(conversationId: string): void {
    for (const msg of this.held.release(conversationId)) this.handOver(msg, "live");
    if (this.held.waiting(conversationId)) {
      this.waitForLate(conversationId);
    } else {
      const timer = this.gapTimers.get(conversationId);
      if (timer) clearTimeout(timer);
      this.gapTimers.delete(conversationId);
    }
  }

  private waitForLate(conversationId: string): void {
    if (this.gapTimers.has(conversationId)) return;
    const wait = this.options.gapWaitMs ?? 200;
    this.gapTimers.set(conversationId, setTimeout(() => {
      this.gapTimers.delete(conversationId);
      if (this.held.waiting(conversationId)) void this.syncAll(); // still a hole: the sync fills it
    }, wait));
  }

  /**
   * Sync to completion from the cursors (section 9); one at a time, run again if asked meanwhile. True when it
   * completed; a retryable refusal (the database briefly down) is tried again after a backoff on the same socket.
   */
  syncAll(): Promise<boolean> {
    if (this.syncing) {
      this.syncAgain = true; // the running sync goes round again, from the cursors as they are then
      return this.syncing.then(() => this.lastSyncCompleted);
    }
    const conn = this.conn;
    const heldBefore = this.held.mark();
    let completed = false;
    this.syncing = (async () => {
      let failures = 0;
      try {
        do {
          this.syncAgain = false;
          for (;;) {
            let page: Synced;
            try {
              page = await conn!.request<Synced & AnyFrame>({
                t: "sync", cursors: this.cursors.snapshot(), limit: this.options.syncLimit ?? 200,
              });
            } catch (exc) {
              if (!(exc instanceof PicaError) || exc instanceof Disconnected || !exc.retryable) throw exc;
              await sleep(exc.retryAfter !== null ? exc.retryAfter * 1000
                : Math.min(RETRY_CAP_MS, this.backoff.delay(failures++, this.options.random)));
              continue;
            }
            if (this.conn !== conn) return;
            for (const msg of page.msgs) {
              if (this.cursors.acceptSynced(msg) === "new") this.handOver(msg, "sync");
            }
            if (!page.more) break;
          }
        } while (this.syncAgain);
        for (const id of this.held.conversations()) this.releaseHeld(id);
        this.held.forget(heldBefore);
        for (const id of heldBefore.keys()) this.releaseHeld(id); // ends its wait once emptied
        completed = true;
      } catch {
        // dropped mid-way: the next ready syncs again
      } finally {
        this.lastSyncCompleted = completed;
        this.syncing = null;
        this.persist();
      }
    })();
    return this.syncing.then(() => completed);
  }

  // ------------------------------------------------------------------------------------------------ receipts

  private queueRecv(conversationId: string): void {
    if (this.options.autoReceive === false || conversationId.startsWith("u:")) return;
    this.recvQueue.add(conversationId);
    if (this.recvTimer) return;
    this.recvTimer = setTimeout(() => {
      this.recvTimer = null;
      this.flushRecv();
    }, RECV_DELAY_MS);
  }

  private flushRecv(): void {
    if (!this.conn?.ready) return;
    for (const id of this.recvQueue) {
      const seq = this.cursors.cursor(id);
      if (seq > (this.recvSent.get(id) ?? 0) && this.conn.send({ t: "recv", conversation_id: id, seq })) {
        this.recvSent.set(id, seq);
      }
    }
    this.recvQueue.clear();
  }

  // ------------------------------------------------------------------------------------------------ sending

  /**
   * Send a message to a user (`to`) or a group (`groupId`). Resolves with the server's `sent` once the message is
   * durably stored; until then it stays in the outbox and is re-sent with the same client_msg_id after every
   * reconnect (and after a restart, with a persistent storage), so it is stored exactly once.
   */
  send({ to, groupId, text, body, clientMsgId }: {
    to?: number; groupId?: number; text?: string; body?: Record<string, unknown>; clientMsgId?: string;
  }): Promise<Sent> {
    if ((to === undefined) === (groupId === undefined)) throw new Error("give exactly one of to and groupId");
    const content = body ?? (text !== undefined ? { text } : null);
    if (!content) throw new Error("give text or body");
    const id = clientMsgId ?? newClientMsgId();
    const frame: OutboxItem["frame"] = { t: "send", client_msg_id: id, body: content };
    if (to !== undefined) frame.to = to;
    else frame.group_id = groupId;
    const conversationId = to !== undefined ? directId(this.userId, to) : `g:${groupId}`;
    return this.enqueue({ client_msg_id: id, frame, conversation_id: conversationId, queued_at: Date.now() });
  }

  /** Recall (unsend) one of my messages (section 13.1); resolves on the recall event's `sent`. */
  recall(conversationId: string, seq: number): Promise<Sent> {
    const id = newClientMsgId();
    return this.enqueue({ client_msg_id: id, conversation_id: conversationId, queued_at: Date.now(),
      frame: { t: "recall", client_msg_id: id, conversation_id: conversationId, seq } });
  }

  /** Replace the text of one of my messages (section 13.2); resolves on the edit event's `sent`. */
  edit(conversationId: string, seq: number, text: string): Promise<Sent> {
    const id = newClientMsgId();
    return this.enqueue({ client_msg_id: id, conversation_id: conversationId, queued_at: Date.now(),
      frame: { t: "edit", client_msg_id: id, conversation_id: conversationId, seq, text } });
  }

  /** Add an emoji reaction to a message, or take mine back (`remove`; section 28); resolves on the reaction
   * event's `sent`. */
  react(conversationId: string, seq: number, emoji: string, remove = false): Promise<Sent> {
    const id = newClientMsgId();
    return this.enqueue({ client_msg_id: id, conversation_id: conversationId, queued_at: Date.now(),
      frame: { t: "react", client_msg_id: id, conversation_id: conversationId, seq, emoji, remove } });
  }

  /** Remove the link preview of one of my messages, or refuse it before it comes (section 30); resolves on the
   * preview event's `sent`. */
  removePreview(conversationId: string, seq: number): Promise<Sent> {
    const id = newClientMsgId();
    return this.enqueue({ client_msg_id: id, conversation_id: conversationId, queued_at: Date.now(),
      frame: { t: "unpreview", client_msg_id: id, conversation_id: conversationId, seq } });
  }

  /** One page of the thread under group message `root`, oldest first, after `after` (section 28). */
  threadPage(conversationId: string, root: number, after = 0): Promise<AnyFrame> {
    return this.request({ t: "thread", conversation_id: conversationId, root, after });
  }

  private enqueue(item: OutboxItem): Promise<Sent> {
    const promise = this.waitAck(item.client_msg_id);
    this.outbox.set(item.client_msg_id, item);
    this.persist();
    if (this.ready) this.transmit(item);
    return promise;
  }

  /** A promise of the ack of an outbox item (e.g. one restored from the storage). */
  waitAck(clientMsgId: string): Promise<Sent> {
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(clientMsgId) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(clientMsgId, list);
    });
  }

  private transmit(item: OutboxItem, failures = 0): void {
    const conn = this.conn;
    if (!conn?.ready || this.inflight.has(item.client_msg_id) || !this.outbox.has(item.client_msg_id)) return;
    this.inflight.add(item.client_msg_id);
    conn.request<Sent & AnyFrame>(item.frame).then((sent) => {
      this.inflight.delete(item.client_msg_id);
      this.acknowledged(item, sent);
    }, (exc: unknown) => {
      this.inflight.delete(item.client_msg_id);
      if (exc instanceof Disconnected) return; // re-sent after the next ready
      const error = exc instanceof PicaError ? exc : new PicaError("internal", String(exc), { retryable: true });
      if (error.retryable) {
        // rate_limited: the server said when (sooner is refused again); otherwise a backoff.
        const delay = error.retryAfter !== null ? error.retryAfter * 1000
          : Math.min(RETRY_CAP_MS, this.backoff.delay(failures, this.options.random));
        setTimeout(() => {
          if (this.conn === conn) this.transmit(item, failures + 1);
        }, delay);
        return;
      }
      this.outbox.delete(item.client_msg_id);
      this.persist();
      for (const waiter of this.waiters.get(item.client_msg_id) ?? []) waiter.reject(error);
      this.waiters.delete(item.client_msg_id);
      this.emit("sendFailed", { item, error });
    });
  }

  /** Our own send or event was stored: it counts as a live message of ours (section 8.6). */
  private acknowledged(item: OutboxItem, sent: Sent): void {
    if (!this.outbox.delete(item.client_msg_id)) return; // acked already (a reply to an earlier connection's try)
    const frame = item.frame;
    const body = frame.t === "send" ? frame.body as Record<string, unknown>
      : frame.t === "recall" ? { recall: { seq: frame.seq } }
        : frame.t === "react" ? { reaction: { seq: frame.seq, emoji: frame.emoji, add: !frame.remove } }
          : frame.t === "unpreview" ? { preview: { seq: frame.seq, removed: true } }
            : { edit: { seq: frame.seq, text: frame.text } };
    const message: Msg = { t: "msg", conversation_id: sent.conversation_id, seq: sent.seq, sender: this.userId,
      client_msg_id: sent.client_msg_id, ts: sent.ts, body };
    const verdict: Verdict = this.cursors.accept(message);
    if (verdict === "gap") {
      this.ownGapIds.add(item.client_msg_id); // the sync filling the gap returns it: ours, not news
      void this.syncAll();
    } else if (verdict === "new") {
      this.releaseHeld(message.conversation_id);
    }
    this.queueRecv(message.conversation_id);
    this.persist();
    for (const waiter of this.waiters.get(item.client_msg_id) ?? []) waiter.resolve(sent);
    this.waiters.delete(item.client_msg_id);
    this.emit("ack", { item, sent, message });
  }

  // ------------------------------------------------------------------------------------------------ requests

  /**
   * A socket request, waiting out disconnects and retryable errors (`rate_limited` for exactly the `retry_after`
   * the server gave, others with a backoff) until `timeoutMs`; the frame is sent again unchanged.
   */
  async request<T extends AnyFrame = AnyFrame>(frame: AnyFrame, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    let failures = 0;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new PicaError("timeout", `no answer to '${frame.t}'`, { retryable: true });
      try {
        if (!this.ready) await this.waitConnected(left);
        return await this.conn!.request<T>(frame, Math.max(1, deadline - Date.now()));
      } catch (exc) {
        if (exc instanceof GaveUp || !(exc instanceof PicaError) || !exc.retryable) throw exc;
        if (exc instanceof Disconnected) {
          await sleep(10); // the connection notices and reconnects
          continue;
        }
        if (exc.code === "timeout" && Date.now() >= deadline) throw exc;
        await sleep(exc.retryAfter !== null ? exc.retryAfter * 1000
          : Math.min(RETRY_CAP_MS, this.backoff.delay(failures++, this.options.random)));
      }
    }
  }

  /** Send a frame that expects no answer; false when not connected (it is not queued). */
  sendFrame(frame: AnyFrame): boolean {
    return this.conn?.send(frame) ?? false;
  }

  async markRead(conversationId: string, seq: number): Promise<void> {
    await this.request({ t: "read", conversation_id: conversationId, seq });
  }

  /** A delivery ack now (autoReceive sends them by itself). */
  markReceived(conversationId: string, seq: number): boolean {
    return this.sendFrame({ t: "recv", conversation_id: conversationId, seq });
  }

  /** "I am typing" (the server drops more than one a second per conversation). */
  typing(conversationId: string): boolean {
    return this.sendFrame({ t: "typing", conversation_id: conversationId });
  }

  async deleteForMe(conversationId: string, seq: number): Promise<void> {
    await this.request({ t: "delete", conversation_id: conversationId, seq });
  }

  /** One page of a conversation, ascending by seq (section 10); `before`/`after` are exclusive. */
  history(conversationId: string, { before, after, limit }: { before?: number; after?: number; limit?: number } = {}):
    Promise<Page> {
    const frame: AnyFrame = { t: "history", conversation_id: conversationId };
    if (before !== undefined) frame.before = before;
    if (after !== undefined) frame.after = after;
    if (limit !== undefined) frame.limit = limit;
    return this.request<Page & AnyFrame>(frame);
  }

  async answerInvitation(groupId: number, accept: boolean): Promise<void> {
    await this.request({ t: "answer", group_id: groupId, accept });
  }

  // ------------------------------------------------------------------------------------------------ calls (section 27)

  call(to: number, sdp: string, media: "audio" | "video" = "audio"): Promise<CallPlaced> {
    return this.request<CallPlaced & AnyFrame>({ t: "call_invite", to, sdp, media });
  }

  async acceptCall(callId: string, sdp: string): Promise<void> {
    await this.request({ t: "call_accept", call_id: callId, sdp });
  }

  async ringing(callId: string): Promise<void> {
    await this.request({ t: "call_ringing", call_id: callId });
  }

  async declineCall(callId: string): Promise<void> {
    await this.request({ t: "call_decline", call_id: callId });
  }

  async cancelCall(callId: string): Promise<void> {
    await this.request({ t: "call_cancel", call_id: callId });
  }

  async hangUp(callId: string): Promise<void> {
    await this.request({ t: "call_hangup", call_id: callId });
  }

  async sendCandidate(callId: string, candidate: string, sdpMid?: string | null, sdpMLineIndex?: number | null):
    Promise<void> {
    await this.request({ t: "call_candidate", call_id: callId, candidate, sdp_mid: sdpMid ?? null,
      sdp_mline_index: sdpMLineIndex ?? null });
  }

  turn(): Promise<{ urls: string[]; username: string; credential: string; ttl: number }> {
    return this.http.get("/v1/turn");
  }

  // ------------------------------------------------------------------------------------------------ HTTP helpers

  async conversations(query = ""): Promise<any[]> {
    return (await this.http.get(`/v1/conversations${query}`)).conversations;
  }

  async search(q: string, conversationId?: string): Promise<any[]> {
    const params = new URLSearchParams({ q });
    if (conversationId) params.set("conversation_id", conversationId);
    return (await this.http.get(`/v1/search?${params}`)).messages;
  }

  user(userId: number): Promise<{ user_id: number; username: string; deleted: boolean }> {
    return this.http.get(`/v1/users/${userId}`);
  }

  /** The id of the user with this username (404 `user_not_found` otherwise). */
  async findUser(username: string): Promise<number> {
    return (await this.http.get(`/v1/users?username=${encodeURIComponent(username)}`)).user_id;
  }

  createGroup(name: string, members: number[] = []): Promise<any> {
    return this.http.post("/v1/groups", { name, members });
  }

  addMembers(groupId: number, userIds: number[]): Promise<any> {
    return this.http.post(`/v1/groups/${groupId}/members`, { user_ids: userIds });
  }

  removeMember(groupId: number, userId: number): Promise<any> {
    return this.http.request("DELETE", `/v1/groups/${groupId}/members/${userId}`);
  }

  async groups(): Promise<any[]> {
    return (await this.http.get("/v1/groups")).groups;
  }

  async groupMembers(groupId: number): Promise<any[]> {
    return (await this.http.get(`/v1/groups/${groupId}/members`)).members;
  }

  async requestContact(userId: number): Promise<string> {
    return (await this.http.post("/v1/contacts/requests", { user_id: userId })).state;
  }

  async acceptContact(userId: number): Promise<string> {
    return (await this.http.post(`/v1/contacts/requests/${userId}/accept`)).state;
  }

  async contacts(): Promise<any[]> {
    return (await this.http.get("/v1/contacts")).contacts;
  }

  async block(userId: number): Promise<void> {
    await this.http.request("PUT", `/v1/blocks/${userId}`);
  }

  async presence(userIds: number[]): Promise<Presence[]> {
    return (await this.http.get(`/v1/presence?user_ids=${userIds.join(",")}`)).presence;
  }

  async invitations(): Promise<any[]> {
    return (await this.http.get("/v1/invitations")).invitations;
  }

  /** Upload a file (section 26.1) with progress; send it with `send({ body: { file: { id: info.file_id } } })`. */
  upload(data: Blob, filename: string, onProgress?: (sent: number, total: number) => void): Promise<FileInfo> {
    return this.http.upload(data, filename, onProgress);
  }
}
