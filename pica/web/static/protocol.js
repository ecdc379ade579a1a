// The wire: HTTP API calls and the WebSocket connection of docs/protocol.md (auth, heartbeats, requests matched by
// id/ref, reconnect with exponential backoff and full jitter). Knows nothing about conversations or the page.

export class ApiError extends Error {
  constructor(status, code, message, retryable = false, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryable = retryable;
    /** With rate_limited: seconds after which the same request will be accepted (docs/protocol.md 21.1). */
    this.retryAfter = retryAfter;
  }
}

/** Thrown to pending requests when the connection drops: the request may or may not have been served. */
export class Disconnected extends Error {
  constructor() {
    super("not connected");
    this.code = "disconnected";
    this.retryable = true;
  }
}

/** One HTTP API call: JSON in and out, errors as ApiError {status, code, message}. */
export async function api(path, { method = "GET", token = null, body, timeoutMs = 15000 } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "network", "cannot reach the server", true);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, data?.code || "http_error", data?.message || response.statusText,
      Boolean(data?.retryable), typeof data?.retry_after === "number" ? data.retry_after : null);
  }
  return data;
}

export function wsUrl() {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
}

// Close codes (section 20): 4502 needs a renewed access token (the refresh token gives one); 4501 and 4506 need a new
// login; 4500, 4503, 4504 mean this client is wrong: retrying the same way fails again; 4505 (too many sessions) must
// wait for the user, or reconnecting would close another of their sessions. Everything else (4000-4499, 1000, 1006,
// 1009, ...) is reconnect-with-backoff.
const TOKEN_EXPIRED = 4502;
const AUTH_CLOSE = new Set([4501, 4502, 4506]);
const FINAL_CLOSE = new Set([4500, 4503, 4504, 4505]);
const RESPONSE_TYPES = new Set(["sent", "synced", "page", "done", "pong", "call_placed"]); // call_placed: calls hook

/**
 * A connection that stays up. Callbacks:
 *   onReady(readyFrame)        after every successful auth (first connect and each reconnect)
 *   onFrame(frame)             server frames that are not responses (msg, receipt, typing, presence, contact, ...)
 *   onStatus(state, detail)    "connecting" | "ready" | "reconnecting" | "failed" | "stopped"
 *   onAuthLost(code)           the session is over (4501, 4506, or 4502 that renewToken could not fix): log in again
 *   renewToken()               async: a fresh access token after 4502, or null when the session cannot be renewed
 */
export class Connection {
  constructor({ url = wsUrl(), token, device = "web", onReady, onFrame, onStatus, onAuthLost, renewToken,
    backoffBase = 500, backoffCap = 15000, requestTimeoutMs = 20000 }) {
    this.url = url;
    this.token = token;
    this.renewToken = renewToken || (async () => null);
    this.device = device;
    this.onReady = onReady || (() => {});
    this.onFrame = onFrame || (() => {});
    this.onStatus = onStatus || (() => {});
    this.onAuthLost = onAuthLost || (() => {});
    this.backoffBase = backoffBase;
    this.backoffCap = backoffCap;
    this.requestTimeoutMs = requestTimeoutMs;
    this.ws = null;
    this.ready = false;
    this.stopped = true;
    this.attempt = 0;
    this.nextId = 1;
    this.pending = new Map();
    this.heartbeatMs = 25000;
    this.lastSent = 0;
    this.lastRecv = 0;
    this.readyAt = 0;
    this.retryTimer = null;
    this.tickTimer = null;
    this.authTimer = null;
    this._wake = () => this._reconnectNow();
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener("online", this._wake);
    document.addEventListener("visibilitychange", this._wake);
    this._connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this._wake);
    document.removeEventListener("visibilitychange", this._wake);
    clearTimeout(this.retryTimer);
    this._teardown(1000, "logout");
    this.onStatus("stopped");
  }

  /** Send a frame that expects no answer. Returns false when not connected. */
  send(frame) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    this.lastSent = Date.now();
    return true;
  }

  /** Send a request with a fresh id; resolves with the response whose ref matches, rejects on `error`. */
  request(frame, timeoutMs = this.requestTimeoutMs) {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ApiError(0, "timeout", `no answer to '${frame.t}'`, true));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      if (!this.send({ ...frame, id })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new Disconnected());
      }
    });
  }

  // ------------------------------------------------------------------------------------------------ internals

  _connect() {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.onStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.lastRecv = Date.now();
      ws.send(JSON.stringify({ t: "auth", token: this.token, device: this.device }));
      this.lastSent = Date.now();
    };
    ws.onmessage = (event) => this._onMessage(ws, event);
    ws.onclose = (event) => {
      if (ws === this.ws) this._dropped(event.code, event.reason);
    };
    ws.onerror = () => {}; // a close event follows
    // Not READY in time (server hung, proxy black hole): give up on this socket and back off.
    this.authTimer = setTimeout(() => {
      if (ws === this.ws && !this.ready) this._dropped(4003, "no ready in time");
    }, 15000);
  }

  _onMessage(ws, event) {
    if (ws !== this.ws || typeof event.data !== "string") return;
    this.lastRecv = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!frame || typeof frame.t !== "string") return;
    switch (frame.t) {
      case "ready":
        clearTimeout(this.authTimer);
        this.ready = true;
        this.readyAt = Date.now();
        this.heartbeatMs = Math.max(1000, (Number(frame.heartbeat) || 25) * 1000);
        clearInterval(this.tickTimer);
        this.tickTimer = setInterval(() => this._tick(), Math.min(1000, this.heartbeatMs / 4));
        this.onStatus("ready");
        this.onReady(frame);
        return;
      case "ping":
        this.send({ t: "pong" });
        return;
      case "error":
        if (frame.ref !== undefined && this.pending.has(frame.ref)) {
          const request = this.pending.get(frame.ref);
          this.pending.delete(frame.ref);
          clearTimeout(request.timer);
          request.reject(new ApiError(0, frame.code, frame.message, Boolean(frame.retryable),
            typeof frame.retry_after === "number" ? frame.retry_after : null));
        } else {
          this.onFrame(frame);
        }
        return;
      default:
        if (RESPONSE_TYPES.has(frame.t) && frame.ref !== undefined) {
          const request = this.pending.get(frame.ref);
          if (request) {
            this.pending.delete(frame.ref);
            clearTimeout(request.timer);
            request.resolve(frame);
          }
          return;
        }
        this.onFrame(frame); // unknown types are the application's to ignore
    }
  }

  _tick() {
    const now = Date.now();
    if (!this.ready) return;
    // Dead connection: nothing received for two heartbeats (the server writes at least a ping each heartbeat).
    if (now - this.lastRecv > 2 * this.heartbeatMs + 3000) {
      this._dropped(1006, "connection silent");
      return;
    }
    // Client duty (section 16): a frame at least every heartbeat, whatever the server sends us.
    if (now - this.lastSent >= this.heartbeatMs) this.send({ t: "ping", id: this.nextId++ });
    // Stayed READY for a heartbeat: the next drop starts the backoff over.
    if (this.attempt > 0 && now - this.readyAt >= this.heartbeatMs) this.attempt = 0;
  }

  _teardown(code, reason) {
    clearInterval(this.tickTimer);
    clearTimeout(this.authTimer);
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
    return code;
  }

  _dropped(code, reason) {
    this._teardown(code, reason);
    if (this.stopped) return;
    if (code === TOKEN_EXPIRED) {
      this.onStatus("reconnecting");
      this.renewToken().then((token) => {
        if (this.stopped) return;
        if (token) {
          this.token = token;
          this._connect();
        } else {
          this._authLost(code);
        }
      }, () => this._scheduleReconnect()); // the server could not be reached: try again later
      return;
    }
    if (AUTH_CLOSE.has(code)) {
      this._authLost(code);
      return;
    }
    if (FINAL_CLOSE.has(code)) {
      this.stopped = true;
      this.onStatus("failed", reason || `closed (${code})`);
      return;
    }
    this._scheduleReconnect();
  }

  _authLost(code) {
    this.stopped = true;
    this.onStatus("failed", "signed out");
    this.onAuthLost(code);
  }

  _scheduleReconnect() {
    // Full jitter (section 22): uniform(0, min(cap, base * 2^attempt)).
    const delay = Math.random() * Math.min(this.backoffCap, this.backoffBase * 2 ** Math.min(this.attempt, 20));
    this.attempt += 1;
    this.onStatus("reconnecting");
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _reconnectNow() {
    // The network came back or the tab was shown: no point waiting out the backoff.
    if (this.stopped || this.ws || !this.retryTimer) return;
    if (document.visibilityState === "hidden") return;
    this._connect();
  }
}
