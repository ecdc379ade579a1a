// @pica/client, bundled for the web page from sdk/js (npm run bundle). Do not edit: edit sdk/js/src.

// src/backoff.ts
var Backoff = class {
  constructor({ baseMs = 500, capMs = 15e3 } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
  }
  /**
   * Milliseconds to wait before attempt `attempt` (0 for the first retry): uniform in [0, min(cap, base * 2^attempt)).
   * Full jitter spreads a crowd that lost its server at one moment over the whole window instead of in lockstep.
   */
  delay(attempt, random = Math.random) {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
    return random() * ceiling;
  }
};

// src/errors.ts
var PicaError = class extends Error {
  constructor(code, message, { status = 0, retryable = false, retryAfter = null } = {}) {
    super(message);
    this.name = "PicaError";
    this.code = code;
    this.status = status;
    this.retryable = retryable;
    this.retryAfter = retryAfter;
  }
};
var Disconnected = class extends PicaError {
  constructor() {
    super("disconnected", "not connected", { retryable: true });
    this.name = "Disconnected";
  }
};
var GaveUp = class extends PicaError {
  constructor(closeCode, message) {
    super("gave_up", message);
    this.name = "GaveUp";
    this.closeCode = closeCode;
  }
};

// src/connection.ts
var TOKEN_EXPIRED = 4502;
var AUTH_CLOSES = /* @__PURE__ */ new Set([4501, 4502, 4506]);
var FINAL_CLOSES = /* @__PURE__ */ new Set([4500, 4503, 4504, 4505]);
var RESPONSE_TYPES = /* @__PURE__ */ new Set(["sent", "synced", "page", "done", "pong", "call_placed"]);
var OPEN = 1;
function wsUrl(baseUrl = "") {
  if (!baseUrl) {
    const here = globalThis.location;
    return `${here.protocol === "https:" ? "wss" : "ws"}://${here.host}/v1/ws`;
  }
  return `${baseUrl.replace(/^http/, "ws").replace(/\/+$/, "")}/v1/ws`;
}
var Connection = class {
  constructor(options) {
    this.ready = false;
    /** The `ready` frame of the current connection. */
    this.readyFrame = null;
    this.stopped = true;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = /* @__PURE__ */ new Map();
    this.heartbeatMs = 25e3;
    this.lastSent = 0;
    this.lastRecv = 0;
    this.readyAt = 0;
    this.ws = null;
    this.retryTimer = null;
    this.tickTimer = null;
    this.authTimer = null;
    this.wake = () => this.reconnectNow();
    this.options = options;
    this.url = options.url;
    this.token = options.token;
    this.device = options.device ?? "js";
    this.backoff = options.backoff ?? new Backoff();
    const WS = options.WebSocket ?? globalThis.WebSocket;
    if (!WS) throw new Error("no WebSocket here: pass one (Node 20: node --experimental-websocket, or the ws package)");
    this.WS = WS;
  }
  start() {
    if (!this.stopped) return;
    this.stopped = false;
    const g = globalThis;
    g.window?.addEventListener?.("online", this.wake);
    g.document?.addEventListener?.("visibilitychange", this.wake);
    this.connect();
  }
  stop() {
    this.stopped = true;
    const g = globalThis;
    g.window?.removeEventListener?.("online", this.wake);
    g.document?.removeEventListener?.("visibilitychange", this.wake);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.teardown("logout");
    this.status("stopped");
  }
  get running() {
    return !this.stopped;
  }
  /** Send a frame that expects no answer (recv, typing, a call frame). False when not connected. */
  send(frame) {
    if (!this.ready || !this.ws || this.ws.readyState !== OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }
  /** Send a request with a fresh id; resolves with the response whose ref matches, rejects on `error` or a drop. */
  request(frame, timeoutMs = this.options.requestTimeoutMs ?? 2e4) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const t = String(frame.t);
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new PicaError("timeout", `no answer to '${t}'`, { retryable: true }));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, t });
      if (!this.send({ ...frame, id })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new Disconnected());
      }
    });
  }
  /** Drop the socket now and reconnect (after the backoff): e.g. a dead network the OS has not noticed. */
  drop(reason = "dropped by the client") {
    if (this.ws) this.dropped(1006, reason);
  }
  // ------------------------------------------------------------------------------------------------ internals
  status(state, detail) {
    this.options.onStatus?.(state, detail);
  }
  connect() {
    if (this.stopped) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.status(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
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
    ws.onerror = () => {
    };
    this.authTimer = setTimeout(() => {
      if (ws === this.ws && !this.ready) this.dropped(4003, "no ready in time");
    }, this.options.readyTimeoutMs ?? 15e3);
  }
  onMessage(ws, data) {
    if (ws !== this.ws || typeof data !== "string") return;
    this.lastRecv = Date.now();
    let frame;
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
        this.readyFrame = frame;
        this.readyAt = Date.now();
        this.heartbeatMs = Math.max(1e3, (Number(frame.heartbeat) || 25) * 1e3);
        if (this.tickTimer) clearInterval(this.tickTimer);
        this.tickTimer = setInterval(() => this.tick(), Math.min(1e3, this.heartbeatMs / 4));
        this.status("ready");
        this.options.onReady?.(frame);
        return;
      case "ping":
        this.send({ t: "pong" });
        return;
      case "error": {
        const request = typeof frame.ref === "number" ? this.pending.get(frame.ref) : void 0;
        if (request) {
          this.settle(frame.ref);
          request.reject(new PicaError(frame.code, frame.message, {
            retryable: Boolean(frame.retryable),
            retryAfter: typeof frame.retry_after === "number" ? frame.retry_after : null
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
  settle(id) {
    const request = this.pending.get(id);
    if (!request) return;
    clearTimeout(request.timer);
    this.pending.delete(id);
  }
  tick() {
    const now = Date.now();
    if (!this.ready) return;
    if (now - this.lastRecv > 2 * this.heartbeatMs + 3e3) {
      this.dropped(1006, "connection silent");
      return;
    }
    if (now - this.lastSent >= this.heartbeatMs) this.send({ t: "ping", id: this.nextId++ });
    if (this.attempt > 0 && now - this.readyAt >= this.heartbeatMs) this.attempt = 0;
  }
  teardown(reason) {
    if (this.tickTimer) clearInterval(this.tickTimer);
    if (this.authTimer) clearTimeout(this.authTimer);
    this.tickTimer = this.authTimer = null;
    this.ready = false;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1e3, reason);
      } catch {
      }
    }
    const failed = [...this.pending.values()];
    this.pending.clear();
    for (const request of failed) {
      clearTimeout(request.timer);
      request.reject(new Disconnected());
    }
  }
  dropped(code, reason) {
    this.teardown(reason);
    if (this.stopped) return;
    this.options.onClose?.(code, reason);
    if (code === TOKEN_EXPIRED) {
      this.status("reconnecting");
      (this.options.renewToken ?? (async () => null))().then((token) => {
        if (this.stopped) return;
        if (token) {
          this.token = token;
          this.connect();
        } else {
          this.authLost(code);
        }
      }, () => this.scheduleReconnect());
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
  authLost(code) {
    this.stopped = true;
    this.status("failed", "signed out");
    this.options.onAuthLost?.(code);
  }
  scheduleReconnect() {
    const delay = this.backoff.delay(this.attempt, this.options.random);
    this.attempt += 1;
    this.status("reconnecting");
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
  reconnectNow() {
    if (this.stopped || this.ws || !this.retryTimer) return;
    if (globalThis.document?.visibilityState === "hidden") return;
    this.connect();
  }
};

// src/cursors.ts
var CursorTracker = class {
  constructor(cursors = {}) {
    this.cursors = new Map(cursors instanceof Map ? cursors : Object.entries(cursors));
  }
  /** The highest seq handed to the application with nothing missing below it; 0 when unknown. */
  cursor(conversationId) {
    return this.cursors.get(conversationId) ?? 0;
  }
  knows(conversationId) {
    return this.cursors.has(conversationId);
  }
  /** Start a conversation's cursor at `seq` (e.g. its end, from the conversation list) unless it has one. */
  startAt(conversationId, seq) {
    if (!this.cursors.has(conversationId)) this.cursors.set(conversationId, seq);
  }
  /** Forget a conversation (after the user left it: the server no longer syncs it). */
  drop(conversationId) {
    this.cursors.delete(conversationId);
  }
  snapshot() {
    return Object.fromEntries(this.cursors);
  }
  /** Classify a live message (or our own send's ack) and, when it is NEW, advance the cursor past it. */
  accept(msg) {
    let current = this.cursors.get(msg.conversation_id);
    if (current === void 0) {
      if (msg.seq !== 1) return "gap";
      current = 0;
    }
    if (msg.seq <= current) return "duplicate";
    if (msg.seq !== current + 1) return "gap";
    this.cursors.set(msg.conversation_id, msg.seq);
    return "new";
  }
  /** A message of a synced page: the first one of a conversation new to us is where its cursor starts. */
  acceptSynced(msg) {
    if (!this.cursors.has(msg.conversation_id)) this.cursors.set(msg.conversation_id, msg.seq - 1);
    return this.accept(msg);
  }
};
var GapBuffer = class {
  constructor(cursors, limit = 1e3) {
    this.cursors = cursors;
    this.limit = limit;
    this.held = /* @__PURE__ */ new Map();
  }
  /** False when waiting cannot help (no cursor yet) or too many are held already: sync now. */
  hold(msg) {
    if (!this.cursors.knows(msg.conversation_id)) return false;
    let held = this.held.get(msg.conversation_id);
    if (!held) {
      held = /* @__PURE__ */ new Map();
      this.held.set(msg.conversation_id, held);
    }
    if (held.size >= this.limit && !held.has(msg.seq)) return false;
    held.set(msg.seq, msg);
    return true;
  }
  /** The held messages that are next in line now, accepted and in order; those the cursor passed are dropped. */
  release(conversationId) {
    const held = this.held.get(conversationId);
    if (!held) return [];
    const out = [];
    for (const seq of [...held.keys()]) if (seq <= this.cursors.cursor(conversationId)) held.delete(seq);
    let next = held.get(this.cursors.cursor(conversationId) + 1);
    while (next !== void 0) {
      held.delete(next.seq);
      if (this.cursors.accept(next) === "new") out.push(next);
      next = held.get(this.cursors.cursor(conversationId) + 1);
    }
    if (held.size === 0) this.held.delete(conversationId);
    return out;
  }
  waiting(conversationId) {
    return this.held.has(conversationId);
  }
  conversations() {
    return [...this.held.keys()];
  }
  /** What is held now: hand it to forget() once a sync that started after this has completed. */
  mark() {
    return new Map([...this.held].map(([id, held]) => [id, new Set(held.keys())]));
  }
  /**
   * Drop what was held before a complete sync and is still not next: the sync returned neither it nor what is
   * missing before it, so the user cannot see them (the notice of their own removal is pushed once, never synced).
   */
  forget(marked) {
    for (const [id, seqs] of marked) {
      const held = this.held.get(id);
      if (!held) continue;
      for (const seq of seqs) held.delete(seq);
      if (held.size === 0) this.held.delete(id);
    }
  }
  heldSeqs(conversationId) {
    return [...this.held.get(conversationId)?.keys() ?? []].sort((a, b) => a - b);
  }
};

// src/http.ts
function errorOf(status, data, fallback) {
  return new PicaError(data?.code || "http_error", data?.message || fallback, {
    status,
    retryable: Boolean(data?.retryable),
    retryAfter: typeof data?.retry_after === "number" ? data.retry_after : null
  });
}
async function api(path, {
  method = "GET",
  token = null,
  body,
  timeoutMs = 15e3,
  baseUrl = ""
} = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== void 0) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(baseUrl + path, {
      method,
      headers,
      body: body === void 0 ? void 0 : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      cache: "no-store"
    });
  } catch {
    throw new PicaError("network", "cannot reach the server", { retryable: true });
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw errorOf(response.status, data, response.statusText);
  }
  return data;
}
var PicaHttp = class {
  constructor({ baseUrl = "", token = null, refreshToken = null, onTokens, newerTokens, timeoutMs = 15e3 } = {}) {
    this.renewing = null;
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.token = token;
    this.refreshToken = refreshToken;
    this.onTokens = onTokens ?? (() => {
    });
    this.newerTokens = newerTokens ?? (() => null);
    this.timeoutMs = timeoutMs;
  }
  /** An authenticated call; 401 `token_expired` renews the token with the refresh token and tries once more. */
  async request(method, path, body) {
    const send = () => api(path, { method, body, token: this.token, baseUrl: this.baseUrl, timeoutMs: this.timeoutMs });
    try {
      return await send();
    } catch (exc) {
      if (!(exc instanceof PicaError && exc.code === "token_expired") || !await this.renew()) throw exc;
      return await send();
    }
  }
  get(path) {
    return this.request("GET", path);
  }
  post(path, body = {}) {
    return this.request("POST", path, body);
  }
  /** Keep a new pair of tokens (a login's or a refresh's answer). */
  keep(tokens) {
    this.token = tokens.token;
    if (tokens.refresh_token) this.refreshToken = tokens.refresh_token;
    this.onTokens(tokens);
  }
  /**
   * A fresh access token from the refresh token, or null when the session cannot be renewed (no refresh token, or
   * the server refused it: log in again). Renewals asked for at once share one request: the server rotates the
   * refresh token, so a second request with the same one would look like a theft and end the session.
   */
  renew() {
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      const newer = this.newerTokens();
      if (newer && newer.refresh_token && newer.refresh_token !== this.refreshToken) {
        this.token = newer.token;
        this.refreshToken = newer.refresh_token;
        return newer.token;
      }
      if (!this.refreshToken) return null;
      try {
        const tokens = await api("/v1/auth/refresh", {
          method: "POST",
          body: { refresh_token: this.refreshToken },
          baseUrl: this.baseUrl,
          timeoutMs: this.timeoutMs
        });
        this.keep(tokens);
        return tokens.token;
      } catch (exc) {
        if (exc instanceof PicaError && exc.status === 401) return null;
        throw exc;
      }
    })().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }
  async register(username, password) {
    const data = await api("/v1/auth/register", {
      method: "POST",
      body: { username, password },
      baseUrl: this.baseUrl,
      timeoutMs: this.timeoutMs
    });
    return data.user_id;
  }
  async login(username, password) {
    const tokens = await api("/v1/auth/login", {
      method: "POST",
      body: { username, password },
      baseUrl: this.baseUrl,
      timeoutMs: this.timeoutMs
    });
    this.keep(tokens);
    return tokens;
  }
  /** End this session on the server (its tokens stop working, its sockets close with 4506). */
  async logout() {
    await this.post("/v1/auth/logout");
  }
  /**
   * POST /v1/files with the bytes; `onProgress(sent, total)` as they go (where the platform reports it:
   * XMLHttpRequest in browsers and React Native; elsewhere once, at the end). An expired token is renewed first.
   */
  async upload(data, filename, onProgress) {
    try {
      return await this.uploadOnce(data, filename, onProgress);
    } catch (exc) {
      if (!(exc instanceof PicaError && exc.code === "token_expired") || !await this.renew()) throw exc;
      return await this.uploadOnce(data, filename, onProgress);
    }
  }
  uploadOnce(data, filename, onProgress) {
    const url = `${this.baseUrl}/v1/files?filename=${encodeURIComponent(filename || "file")}`;
    const XHR = globalThis.XMLHttpRequest;
    if (!XHR) return this.uploadByFetch(url, data, onProgress);
    return new Promise((resolve, reject) => {
      const xhr = new XHR();
      xhr.open("POST", url);
      if (this.token) xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.upload.onprogress = (event) => {
        if (onProgress && event.lengthComputable) onProgress(event.loaded, event.total);
      };
      xhr.onload = () => {
        let body = null;
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
        }
        if (xhr.status >= 200 && xhr.status < 300 && body) resolve(body);
        else reject(errorOf(xhr.status, body, `upload failed (${xhr.status})`));
      };
      xhr.onerror = () => reject(new PicaError("network", "upload failed: the connection broke", { retryable: true }));
      xhr.send(data);
    });
  }
  async uploadByFetch(url, data, onProgress) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { Authorization: `Bearer ${this.token ?? ""}`, "Content-Type": "application/octet-stream" },
        body: data
      });
    } catch {
      throw new PicaError("network", "upload failed: cannot reach the server", { retryable: true });
    }
    const body = await response.json().catch(() => null);
    if (!response.ok || !body) {
      throw errorOf(response.status, body, `upload failed (${response.status})`);
    }
    onProgress?.(data.size, data.size);
    return body;
  }
};

// src/client.ts
var MemoryStorage = class {
  constructor() {
    this.items = /* @__PURE__ */ new Map();
  }
  getItem(key) {
    return this.items.get(key) ?? null;
  }
  setItem(key, value) {
    this.items.set(key, value);
  }
  removeItem(key) {
    this.items.delete(key);
  }
};
var RECV_DELAY_MS = 400;
var RETRY_CAP_MS = 2e3;
function newClientMsgId(prefix = "js-") {
  const bytes = new Uint8Array(16);
  globalThis.crypto.getRandomValues(bytes);
  return prefix + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}
function directId(a, b) {
  return a <= b ? `d:${a}:${b}` : `d:${b}:${a}`;
}
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
var PicaClient = class {
  constructor(options) {
    /** Cursors of section 8.6; the application may start or drop one (startAt, drop), then persist(). */
    this.cursors = new CursorTracker();
    /** The `ready` of the current connection, or null while disconnected. */
    this.ready = null;
    this.conn = null;
    this.held = new GapBuffer(this.cursors);
    this.loadedFor = 0;
    this.listeners = /* @__PURE__ */ new Map();
    this.outbox = /* @__PURE__ */ new Map();
    this.waiters = /* @__PURE__ */ new Map();
    this.inflight = /* @__PURE__ */ new Set();
    /** Our ids whose `sent` was a GAP: the sync that fills it returns them, and they are ours, not news. */
    this.ownGapIds = /* @__PURE__ */ new Set();
    this.gapTimers = /* @__PURE__ */ new Map();
    this.recvQueue = /* @__PURE__ */ new Set();
    this.recvSent = /* @__PURE__ */ new Map();
    this.recvTimer = null;
    this.saveTimer = null;
    this.syncing = null;
    this.syncAgain = false;
    this.lastSyncCompleted = false;
    this.everConnected = false;
    this.stopped = false;
    this.failure = null;
    if (!options.token && !(options.username && options.password)) {
      throw new Error("give a token, or a username and a password");
    }
    this.options = options;
    this.http = new PicaHttp({
      baseUrl: options.url,
      token: options.token ?? null,
      refreshToken: options.refreshToken ?? null,
      onTokens: options.onTokens,
      newerTokens: options.newerTokens
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
  async start(timeoutMs = 3e4) {
    this.stopped = false;
    if (!this.http.token) {
      const tokens = await this.http.login(this.options.username, this.options.password);
      if (tokens.user_id && !this.userId) {
        this.userId = tokens.user_id;
        this.load(this.userId);
      }
    }
    if (!this.conn) {
      this.conn = new Connection({
        url: wsUrl(this.options.url),
        token: this.http.token,
        device: this.device,
        backoff: this.backoff,
        WebSocket: this.options.WebSocket,
        random: this.options.random,
        onReady: (ready) => void this.onReady(ready),
        onFrame: (frame) => this.onFrame(frame),
        onStatus: (state, detail) => this.emit("status", { state, detail }),
        onClose: (code, reason) => this.onClose(code, reason),
        onAuthLost: (code) => void this.onAuthLost(code),
        renewToken: () => this.renewToken()
      });
      this.conn.start();
    }
    await this.waitConnected(timeoutMs);
  }
  /** Stop: close the socket, keep the cursors and the outbox (persisted), reject nothing that is queued. */
  close() {
    this.stopped = true;
    this.conn?.stop();
    this.conn = null;
    this.ready = null;
    for (const timer of this.gapTimers.values()) clearTimeout(timer);
    this.gapTimers.clear();
    if (this.recvTimer) clearTimeout(this.recvTimer);
    this.recvTimer = null;
    this.persist();
    const failed = new GaveUp(1e3, "client closed");
    for (const [id, waiters] of this.waiters) {
      for (const waiter of waiters) waiter.reject(failed);
      this.waiters.delete(id);
    }
  }
  /** End the session on the server, then close. */
  async logout() {
    try {
      await this.http.logout();
    } finally {
      this.close();
    }
  }
  /** The socket underneath: requests that must fail at once while disconnected (call signalling), or null. */
  get connection() {
    return this.conn;
  }
  get connected() {
    return this.ready !== null;
  }
  /** Resolves when connected and synced; rejects if the client gave up or after `timeoutMs`. */
  waitConnected(timeoutMs = 3e4) {
    if (this.failure) return Promise.reject(this.failure);
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (error) => {
        clearTimeout(timer);
        offConnected();
        offLost();
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(
        () => done(new PicaError("timeout", "not connected in time", { retryable: true })),
        timeoutMs
      );
      const offConnected = this.on("connected", () => done());
      const offLost = this.on("status", ({ state }) => {
        if (state === "failed" || state === "stopped") done(this.failure ?? new GaveUp(0, "the client stopped"));
      });
    });
  }
  // ------------------------------------------------------------------------------------------------ events
  /** Call `listener` for every event of this kind; returns a function that removes it. */
  on(kind, listener) {
    let set = this.listeners.get(kind);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.listeners.set(kind, set);
    }
    set.add(listener);
    return () => set.delete(listener);
  }
  /** The next event of a kind (that `filter` accepts), or a timeout error. */
  next(kind, { timeoutMs = 1e4, filter } = {}) {
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
  emit(kind, event) {
    for (const listener of [...this.listeners.get(kind) ?? []]) {
      try {
        listener(event);
      } catch (exc) {
        setTimeout(() => {
          throw exc;
        }, 0);
      }
    }
  }
  // ------------------------------------------------------------------------------------------------ persistence
  key(name) {
    return `${this.prefix}${this.userId}.${name}`;
  }
  load(userId) {
    if (this.loadedFor === userId) return;
    this.loadedFor = userId;
    const read = (name) => {
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
  persist() {
    if (!this.userId) return;
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    try {
      this.storage.setItem(this.key("cursors"), JSON.stringify(this.cursors.snapshot()));
      this.storage.setItem(this.key("outbox"), JSON.stringify([...this.outbox.values()]));
    } catch {
    }
  }
  persistSoon() {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.persist(), 300);
  }
  /** Sends, recalls and edits not acknowledged yet (those restored from the storage included), oldest first. */
  pending() {
    return [...this.outbox.values()];
  }
  // ------------------------------------------------------------------------------------------------ connection
  async renewToken() {
    const token = await this.http.renew();
    if (token) return token;
    if (!this.options.password) return null;
    const tokens = await this.http.login(this.options.username, this.options.password);
    return tokens.token;
  }
  onAuthLost(code) {
    if (this.options.password && !this.stopped) {
      this.http.login(this.options.username, this.options.password).then((tokens) => {
        if (this.stopped || !this.conn) return;
        this.conn.token = tokens.token;
        this.conn.start();
      }, (exc) => this.giveUp(code, `login failed: ${exc instanceof Error ? exc.message : String(exc)}`));
      return;
    }
    this.giveUp(code, "the session is over: log in again");
  }
  giveUp(code, message) {
    this.failure = new GaveUp(code, message);
    this.emit("authLost", { code });
    this.emit("status", { state: "failed", detail: message });
  }
  onClose(code, reason) {
    this.ready = null;
    this.inflight.clear();
    this.recvSent.clear();
    this.persist();
    if (code >= 4500 && code < 5e3 && !(code === 4501 || code === 4502 || code === 4506)) {
      this.failure = new GaveUp(code, `the server refused the connection (${code}: ${reason})`);
    }
    this.emit("disconnected", { code, reason });
  }
  async onReady(ready) {
    const conn = this.conn;
    this.failure = null;
    if (ready.user_id !== this.userId) {
      this.userId = ready.user_id;
      this.load(ready.user_id);
    }
    try {
      await this.options.beforeSync?.(ready);
    } catch {
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
  onFrame(frame) {
    switch (frame.t) {
      case "msg":
        this.onLive(frame);
        return;
      case "resync":
        void this.syncAll();
        this.emit("resync", frame);
        return;
      case "receipt":
      case "presence":
      case "typing":
      case "contact":
      case "invitation":
      case "error":
        this.emit(frame.t, frame);
        return;
      default:
        if (frame.t.startsWith("call_")) this.emit("call", frame);
        else this.emit("frame", frame);
    }
  }
  // ------------------------------------------------------------------------------------------------ ordering
  onLive(msg) {
    const verdict = this.cursors.accept(msg);
    if (verdict === "new") {
      this.handOver(msg, "live");
      this.releaseHeld(msg.conversation_id);
    } else if (verdict === "gap") {
      if (this.held.hold(msg)) this.waitForLate(msg.conversation_id);
      else void this.syncAll();
    }
  }
  /** A NEW message: to the application, unless it is one of this client's own (its `ack` event stands for it). */
  handOver(msg, source) {
    this.persistSoon();
    this.queueRecv(msg.conversation_id);
    if (msg.sender === this.userId && (this.outbox.has(msg.client_msg_id) || this.ownGapIds.delete(msg.client_msg_id))) {
      return;
    }
    this.emit("message", { message: msg, source });
  }
  releaseHeld(conversationId) {
    for (const msg of this.held.release(conversationId)) this.handOver(msg, "live");
    if (this.held.waiting(conversationId)) {
      this.waitForLate(conversationId);
    } else {
      const timer = this.gapTimers.get(conversationId);
      if (timer) clearTimeout(timer);
      this.gapTimers.delete(conversationId);
    }
  }
  waitForLate(conversationId) {
    if (this.gapTimers.has(conversationId)) return;
    const wait = this.options.gapWaitMs ?? 200;
    this.gapTimers.set(conversationId, setTimeout(() => {
      this.gapTimers.delete(conversationId);
      if (this.held.waiting(conversationId)) void this.syncAll();
    }, wait));
  }
  /**
   * Sync to completion from the cursors (section 9); one at a time, run again if asked meanwhile. True when it
   * completed; a retryable refusal (the database briefly down) is tried again after a backoff on the same socket.
   */
  syncAll() {
    if (this.syncing) {
      this.syncAgain = true;
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
          for (; ; ) {
            let page;
            try {
              page = await conn.request({
                t: "sync",
                cursors: this.cursors.snapshot(),
                limit: this.options.syncLimit ?? 200
              });
            } catch (exc) {
              if (!(exc instanceof PicaError) || exc instanceof Disconnected || !exc.retryable) throw exc;
              await sleep(exc.retryAfter !== null ? exc.retryAfter * 1e3 : Math.min(RETRY_CAP_MS, this.backoff.delay(failures++, this.options.random)));
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
        for (const id of heldBefore.keys()) this.releaseHeld(id);
        completed = true;
      } catch {
      } finally {
        this.lastSyncCompleted = completed;
        this.syncing = null;
        this.persist();
      }
    })();
    return this.syncing.then(() => completed);
  }
  // ------------------------------------------------------------------------------------------------ receipts
  queueRecv(conversationId) {
    if (this.options.autoReceive === false || conversationId.startsWith("u:")) return;
    this.recvQueue.add(conversationId);
    if (this.recvTimer) return;
    this.recvTimer = setTimeout(() => {
      this.recvTimer = null;
      this.flushRecv();
    }, RECV_DELAY_MS);
  }
  flushRecv() {
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
  send({ to, groupId, text, body, clientMsgId }) {
    if (to === void 0 === (groupId === void 0)) throw new Error("give exactly one of to and groupId");
    const content = body ?? (text !== void 0 ? { text } : null);
    if (!content) throw new Error("give text or body");
    const id = clientMsgId ?? newClientMsgId();
    const frame = { t: "send", client_msg_id: id, body: content };
    if (to !== void 0) frame.to = to;
    else frame.group_id = groupId;
    const conversationId = to !== void 0 ? directId(this.userId, to) : `g:${groupId}`;
    return this.enqueue({ client_msg_id: id, frame, conversation_id: conversationId, queued_at: Date.now() });
  }
  /** Recall (unsend) one of my messages (section 13.1); resolves on the recall event's `sent`. */
  recall(conversationId, seq) {
    const id = newClientMsgId();
    return this.enqueue({
      client_msg_id: id,
      conversation_id: conversationId,
      queued_at: Date.now(),
      frame: { t: "recall", client_msg_id: id, conversation_id: conversationId, seq }
    });
  }
  /** Replace the text of one of my messages (section 13.2); resolves on the edit event's `sent`. */
  edit(conversationId, seq, text) {
    const id = newClientMsgId();
    return this.enqueue({
      client_msg_id: id,
      conversation_id: conversationId,
      queued_at: Date.now(),
      frame: { t: "edit", client_msg_id: id, conversation_id: conversationId, seq, text }
    });
  }
  /** Add an emoji reaction to a message, or take mine back (`remove`; section 28); resolves on the reaction
   * event's `sent`. */
  react(conversationId, seq, emoji, remove = false) {
    const id = newClientMsgId();
    return this.enqueue({
      client_msg_id: id,
      conversation_id: conversationId,
      queued_at: Date.now(),
      frame: { t: "react", client_msg_id: id, conversation_id: conversationId, seq, emoji, remove }
    });
  }
  /** Remove the link preview of one of my messages, or refuse it before it comes (section 30); resolves on the
   * preview event's `sent`. */
  removePreview(conversationId, seq) {
    const id = newClientMsgId();
    return this.enqueue({
      client_msg_id: id,
      conversation_id: conversationId,
      queued_at: Date.now(),
      frame: { t: "unpreview", client_msg_id: id, conversation_id: conversationId, seq }
    });
  }
  /** One page of the thread under group message `root`, oldest first, after `after` (section 28). */
  threadPage(conversationId, root, after = 0) {
    return this.request({ t: "thread", conversation_id: conversationId, root, after });
  }
  enqueue(item) {
    const promise = this.waitAck(item.client_msg_id);
    this.outbox.set(item.client_msg_id, item);
    this.persist();
    if (this.ready) this.transmit(item);
    return promise;
  }
  /** A promise of the ack of an outbox item (e.g. one restored from the storage). */
  waitAck(clientMsgId) {
    return new Promise((resolve, reject) => {
      const list = this.waiters.get(clientMsgId) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(clientMsgId, list);
    });
  }
  transmit(item, failures = 0) {
    const conn = this.conn;
    if (!conn?.ready || this.inflight.has(item.client_msg_id) || !this.outbox.has(item.client_msg_id)) return;
    this.inflight.add(item.client_msg_id);
    conn.request(item.frame).then((sent) => {
      this.inflight.delete(item.client_msg_id);
      this.acknowledged(item, sent);
    }, (exc) => {
      this.inflight.delete(item.client_msg_id);
      if (exc instanceof Disconnected) return;
      const error = exc instanceof PicaError ? exc : new PicaError("internal", String(exc), { retryable: true });
      if (error.retryable) {
        const delay = error.retryAfter !== null ? error.retryAfter * 1e3 : Math.min(RETRY_CAP_MS, this.backoff.delay(failures, this.options.random));
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
  acknowledged(item, sent) {
    if (!this.outbox.delete(item.client_msg_id)) return;
    const frame = item.frame;
    const body = frame.t === "send" ? frame.body : frame.t === "recall" ? { recall: { seq: frame.seq } } : frame.t === "react" ? { reaction: { seq: frame.seq, emoji: frame.emoji, add: !frame.remove } } : frame.t === "unpreview" ? { preview: { seq: frame.seq, removed: true } } : { edit: { seq: frame.seq, text: frame.text } };
    const message = {
      t: "msg",
      conversation_id: sent.conversation_id,
      seq: sent.seq,
      sender: this.userId,
      client_msg_id: sent.client_msg_id,
      ts: sent.ts,
      body
    };
    const verdict = this.cursors.accept(message);
    if (verdict === "gap") {
      this.ownGapIds.add(item.client_msg_id);
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
  async request(frame, timeoutMs = 6e4) {
    const deadline = Date.now() + timeoutMs;
    let failures = 0;
    for (; ; ) {
      const left = deadline - Date.now();
      if (left <= 0) throw new PicaError("timeout", `no answer to '${frame.t}'`, { retryable: true });
      try {
        if (!this.ready) await this.waitConnected(left);
        return await this.conn.request(frame, Math.max(1, deadline - Date.now()));
      } catch (exc) {
        if (exc instanceof GaveUp || !(exc instanceof PicaError) || !exc.retryable) throw exc;
        if (exc instanceof Disconnected) {
          await sleep(10);
          continue;
        }
        if (exc.code === "timeout" && Date.now() >= deadline) throw exc;
        await sleep(exc.retryAfter !== null ? exc.retryAfter * 1e3 : Math.min(RETRY_CAP_MS, this.backoff.delay(failures++, this.options.random)));
      }
    }
  }
  /** Send a frame that expects no answer; false when not connected (it is not queued). */
  sendFrame(frame) {
    return this.conn?.send(frame) ?? false;
  }
  async markRead(conversationId, seq) {
    await this.request({ t: "read", conversation_id: conversationId, seq });
  }
  /** A delivery ack now (autoReceive sends them by itself). */
  markReceived(conversationId, seq) {
    return this.sendFrame({ t: "recv", conversation_id: conversationId, seq });
  }
  /** "I am typing" (the server drops more than one a second per conversation). */
  typing(conversationId) {
    return this.sendFrame({ t: "typing", conversation_id: conversationId });
  }
  async deleteForMe(conversationId, seq) {
    await this.request({ t: "delete", conversation_id: conversationId, seq });
  }
  /** One page of a conversation, ascending by seq (section 10); `before`/`after` are exclusive. */
  history(conversationId, { before, after, limit } = {}) {
    const frame = { t: "history", conversation_id: conversationId };
    if (before !== void 0) frame.before = before;
    if (after !== void 0) frame.after = after;
    if (limit !== void 0) frame.limit = limit;
    return this.request(frame);
  }
  async answerInvitation(groupId, accept) {
    await this.request({ t: "answer", group_id: groupId, accept });
  }
  // ------------------------------------------------------------------------------------------------ calls (section 27)
  call(to, sdp, media = "audio") {
    return this.request({ t: "call_invite", to, sdp, media });
  }
  async acceptCall(callId, sdp) {
    await this.request({ t: "call_accept", call_id: callId, sdp });
  }
  async ringing(callId) {
    await this.request({ t: "call_ringing", call_id: callId });
  }
  async declineCall(callId) {
    await this.request({ t: "call_decline", call_id: callId });
  }
  async cancelCall(callId) {
    await this.request({ t: "call_cancel", call_id: callId });
  }
  async hangUp(callId) {
    await this.request({ t: "call_hangup", call_id: callId });
  }
  async sendCandidate(callId, candidate, sdpMid, sdpMLineIndex) {
    await this.request({
      t: "call_candidate",
      call_id: callId,
      candidate,
      sdp_mid: sdpMid ?? null,
      sdp_mline_index: sdpMLineIndex ?? null
    });
  }
  turn() {
    return this.http.get("/v1/turn");
  }
  // ------------------------------------------------------------------------------------------------ HTTP helpers
  async conversations(query = "") {
    return (await this.http.get(`/v1/conversations${query}`)).conversations;
  }
  async search(q, conversationId) {
    const params = new URLSearchParams({ q });
    if (conversationId) params.set("conversation_id", conversationId);
    return (await this.http.get(`/v1/search?${params}`)).messages;
  }
  user(userId) {
    return this.http.get(`/v1/users/${userId}`);
  }
  /** The id of the user with this username (404 `user_not_found` otherwise). */
  async findUser(username) {
    return (await this.http.get(`/v1/users?username=${encodeURIComponent(username)}`)).user_id;
  }
  createGroup(name, members = []) {
    return this.http.post("/v1/groups", { name, members });
  }
  addMembers(groupId, userIds) {
    return this.http.post(`/v1/groups/${groupId}/members`, { user_ids: userIds });
  }
  removeMember(groupId, userId) {
    return this.http.request("DELETE", `/v1/groups/${groupId}/members/${userId}`);
  }
  async groups() {
    return (await this.http.get("/v1/groups")).groups;
  }
  async groupMembers(groupId) {
    return (await this.http.get(`/v1/groups/${groupId}/members`)).members;
  }
  async requestContact(userId) {
    return (await this.http.post("/v1/contacts/requests", { user_id: userId })).state;
  }
  async acceptContact(userId) {
    return (await this.http.post(`/v1/contacts/requests/${userId}/accept`)).state;
  }
  async contacts() {
    return (await this.http.get("/v1/contacts")).contacts;
  }
  async block(userId) {
    await this.http.request("PUT", `/v1/blocks/${userId}`);
  }
  async presence(userIds) {
    return (await this.http.get(`/v1/presence?user_ids=${userIds.join(",")}`)).presence;
  }
  async invitations() {
    return (await this.http.get("/v1/invitations")).invitations;
  }
  /** Upload a file (section 26.1) with progress; send it with `send({ body: { file: { id: info.file_id } } })`. */
  upload(data, filename, onProgress) {
    return this.http.upload(data, filename, onProgress);
  }
};

// src/frames.ts
var PROTOCOL_VERSION = 1;
export {
  AUTH_CLOSES,
  Backoff,
  Connection,
  CursorTracker,
  Disconnected,
  FINAL_CLOSES,
  GapBuffer,
  GaveUp,
  MemoryStorage,
  PROTOCOL_VERSION,
  PicaClient,
  PicaError,
  PicaHttp,
  TOKEN_EXPIRED,
  api,
  directId,
  newClientMsgId,
  wsUrl
};
