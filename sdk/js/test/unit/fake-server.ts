// A scripted stand-in for the platform's WebSocket (not for any SDK code): a tiny in-memory server speaking the
// frames PicaClient uses (auth, sync, send with de-duplication by client_msg_id, recv, ping), and able to drop
// every socket or swallow answers, so that resume and re-send can be watched without a network.

interface Stored { conversation_id: string; seq: number; sender: number; client_msg_id: string; ts: number; body: object }

export class FakeServer {
  readonly messages = new Map<string, Stored[]>();
  readonly sockets = new Set<FakeSocket>();
  readonly received: any[] = [];
  /** When each frame of `received` came (Date.now()). */
  readonly receivedAt: number[] = [];
  /** While true, sends are stored but their `sent` is never written (the socket dies before the ack). */
  swallowAcks = false;
  /** Sends to refuse with `rate_limited` before storing any, and the `retry_after` (seconds) they are told. */
  rateLimited = 0;
  retryAfter = 0.2;
  userId = 7;

  constructor() {
    const server = this;
    this.WebSocket = class extends FakeSocket {
      constructor(url: string) {
        super(server, url);
      }
    };
  }

  readonly WebSocket: new (url: string) => FakeSocket;

  store(conversationId: string, sender: number, clientMsgId: string, body: object): { stored: Stored; duplicate: boolean } {
    for (const list of this.messages.values()) {
      const found = list.find((x) => x.sender === sender && x.client_msg_id === clientMsgId);
      if (found) return { stored: found, duplicate: true };
    }
    const list = this.messages.get(conversationId) ?? [];
    this.messages.set(conversationId, list);
    const stored = { conversation_id: conversationId, seq: list.length + 1, sender, client_msg_id: clientMsgId,
      ts: Date.now(), body };
    list.push(stored);
    return { stored, duplicate: false };
  }

  /** A message from someone else, pushed live to every socket (or not, when `push` is false). */
  deliver(conversationId: string, sender: number, text: string, push = true): Stored {
    const { stored } = this.store(conversationId, sender, `peer-${Math.random()}`, { text });
    if (push) for (const socket of this.sockets) socket.push({ t: "msg", ...stored });
    return stored;
  }

  dropAll(code = 1006): void {
    for (const socket of [...this.sockets]) socket.serverClose(code);
  }

  count(clientMsgId: string): number {
    let n = 0;
    for (const list of this.messages.values()) n += list.filter((x) => x.client_msg_id === clientMsgId).length;
    return n;
  }
}

export class FakeSocket {
  readyState = 0;
  onopen: ((event: any) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: any) => void) | null = null;

  constructor(private readonly server: FakeServer, readonly url: string) {
    server.sockets.add(this);
    setTimeout(() => {
      this.readyState = 1;
      this.onopen?.({});
    }, 1);
  }

  push(frame: object): void {
    if (this.readyState !== 1) return;
    const data = JSON.stringify(frame);
    setTimeout(() => this.onmessage?.({ data }), 0);
  }

  serverClose(code: number): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.server.sockets.delete(this);
    setTimeout(() => this.onclose?.({ code, reason: "" }), 0);
  }

  close(): void {
    this.readyState = 3;
    this.server.sockets.delete(this);
  }

  send(data: string): void {
    const frame = JSON.parse(data);
    const server = this.server;
    server.received.push(frame);
    server.receivedAt.push(Date.now());
    const ref = frame.id === undefined ? {} : { ref: frame.id };
    switch (frame.t) {
      case "auth":
        this.push({ t: "ready", v: 1, user_id: server.userId, device: frame.device, session: "0", heartbeat: 25,
          idle_timeout: 75, max_frame: 65536, time: Date.now() });
        return;
      case "sync": {
        const msgs = [];
        for (const [id, list] of [...server.messages].sort()) {
          const after = frame.cursors[id] ?? 0;
          msgs.push(...list.filter((x) => x.seq > after).map((x) => ({ t: "msg", ...x })));
        }
        this.push({ t: "synced", msgs, more: false, ...ref });
        return;
      }
      case "send": {
        if (server.rateLimited > 0) {
          server.rateLimited -= 1;
          this.push({ t: "error", code: "rate_limited", message: "slow down", retryable: true,
            retry_after: server.retryAfter, ...ref });
          return;
        }
        if (frame.client_msg_id.startsWith("~")) {
          this.push({ t: "error", code: "bad_request", message: "client_msg_id must not start with '~'", ...ref });
          return;
        }
        const to = frame.to;
        const id = `d:${Math.min(to, server.userId)}:${Math.max(to, server.userId)}`;
        const { stored, duplicate } = server.store(id, server.userId, frame.client_msg_id, frame.body);
        if (server.swallowAcks) return;
        this.push({ t: "sent", client_msg_id: frame.client_msg_id, conversation_id: id, seq: stored.seq,
          ts: stored.ts, ...ref, ...(duplicate ? { duplicate: true } : {}) });
        return;
      }
      case "ping":
        this.push({ t: "pong", ...ref });
        return;
      default:
    }
  }
}
