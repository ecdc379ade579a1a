// The SDK against a real `pica serve`: a 1:1 chat, a group, and a kill -9 of the server with sends in flight.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Backoff } from "../../src/backoff.js";
import { PicaClient } from "../../src/client.js";
import type { Msg } from "../../src/frames.js";
import { PicaHttp } from "../../src/http.js";
import { newUser, PASSWORD, ServerProcess, startServer, workDir } from "./server.js";

const fast = () => new Backoff({ baseMs: 100, capMs: 1000 });
let server: ServerProcess;
let work: { dir: string; cleanup: () => void };
const clients: PicaClient[] = [];

function connect(url: string, username: string): PicaClient {
  const client = new PicaClient({ url, username, password: PASSWORD, backoff: fast() });
  clients.push(client);
  return client;
}

before(async () => {
  work = workDir();
  server = await startServer(work.dir);
});

after(async () => {
  for (const client of clients) client.close();
  await server.stop();
  work.cleanup();
});

test("alice and bob chat 1:1: message, read receipt, typing", async () => {
  const a = await newUser(server.url, "alice");
  const b = await newUser(server.url, "bob");
  const alice = connect(server.url, a.username);
  const bob = connect(server.url, b.username);
  await Promise.all([alice.start(), bob.start()]);

  const arrives = bob.next("message");
  const sent = await alice.send({ to: b.userId, text: "hello, bob" });
  assert.equal(sent.conversation_id, `d:${Math.min(a.userId, b.userId)}:${Math.max(a.userId, b.userId)}`);
  const { message } = await arrives;
  assert.equal(message.body.text, "hello, bob");
  assert.equal(message.sender, a.userId);

  const receipt = alice.next("receipt", { filter: (r) => r.read === message.seq });
  await bob.markRead(message.conversation_id, message.seq);
  assert.equal((await receipt).user_id, b.userId);

  const typing = bob.next("typing");
  alice.typing(message.conversation_id);
  assert.equal((await typing).user_id, a.userId);
});

test("a group: created over HTTP, each member gets every message once and in order", async () => {
  const [a, b, c] = await Promise.all(["owner", "bea", "cyd"].map((p) => newUser(server.url, p)));
  const [owner, bea, cyd] = [a, b, c].map((u) => connect(server.url, u.username));
  await Promise.all([owner, bea, cyd].map((client) => client.start()));
  const group = await owner.createGroup("Team", [b.userId, c.userId]);
  const got = new Map<PicaClient, string[]>([[bea, []], [cyd, []]]);
  for (const [client, texts] of got) {
    client.on("message", ({ message }) => {
      if (message.conversation_id === group.conversation_id && typeof message.body.text === "string") {
        texts.push(message.body.text);
      }
    });
  }
  const texts = Array.from({ length: 10 }, (_, i) => `hello team ${i}`);
  await Promise.all(texts.map((text) => owner.send({ groupId: group.group_id, text })));
  const deadline = Date.now() + 10_000;
  while ([...got.values()].some((list) => list.length < texts.length) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const history = await bea.history(group.conversation_id);
  const order = history.msgs.filter((m) => typeof m.body.text === "string").map((m) => m.body.text);
  assert.deepEqual(got.get(bea), order);
  assert.deepEqual(got.get(cyd), order);
  assert.equal(order.length, texts.length);
});

test("kill -9 of the server with sends in flight: each stored once, the reader resumes without loss", async () => {
  const local = workDir();
  let first: ServerProcess | null = await startServer(local.dir);
  let second: ServerProcess | null = null;
  try {
    const a = await newUser(first.url, "alice");
    const b = await newUser(first.url, "bob");
    const alice = connect(first.url, a.username);
    const bob = connect(first.url, b.username);
    await Promise.all([alice.start(), bob.start()]);
    const seen: Msg[] = [];
    bob.on("message", ({ message }) => seen.push(message));

    const sends = Array.from({ length: 40 }, (_, i) => alice.send({ to: b.userId, text: `m${i}`, clientMsgId: `k-${i}` }));
    await new Promise((resolve) => setTimeout(resolve, 30));
    await first.kill9();
    await alice.next("disconnected", { timeoutMs: 10_000 }).catch(() => undefined);
    const late = alice.send({ to: b.userId, text: "sent while down", clientMsgId: "late" });
    second = await startServer(local.dir, first.httpPort, first.tcpPort);
    first = null;
    const acks = await Promise.all([...sends, late]);

    assert.equal(new Set(acks.map((s) => s.seq)).size, acks.length, "one seq per message: nothing stored twice");
    const http = new PicaHttp({ baseUrl: second.url });
    await http.login(b.username, PASSWORD);
    const stored = await http.get(`/v1/conversations/${acks[0].conversation_id}/messages?limit=100`);
    const ids = stored.messages.map((m: Msg) => m.client_msg_id).sort();
    assert.deepEqual(ids, [...Array.from({ length: 40 }, (_, i) => `k-${i}`), "late"].sort());

    const deadline = Date.now() + 15_000;
    while (seen.length < 41 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(seen.map((m) => m.seq), Array.from({ length: 41 }, (_, i) => i + 1), "once each, in order");
  } finally {
    await first?.kill9();
    await second?.stop();
    local.cleanup();
  }
});
