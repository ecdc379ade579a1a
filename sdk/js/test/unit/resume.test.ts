// Resume after a drop: the client syncs from its cursors (each message handed over once, in order) and re-sends
// what was not acknowledged with the same client_msg_id, which the server stores once.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff } from "../../src/backoff.js";
import { MemoryStorage, PicaClient } from "../../src/client.js";
import { FakeServer } from "./fake-server.js";

function client(server: FakeServer, storage = new MemoryStorage()): PicaClient {
  return new PicaClient({ url: "http://fake", token: "t", userId: 7, storage, WebSocket: server.WebSocket,
    backoff: new Backoff({ baseMs: 5, capMs: 20 }), gapWaitMs: 20 });
}

/** Alice connected, with seq 1 from user 8 received; `seen` records every seq handed to her. */
async function chatting(): Promise<{ server: FakeServer; alice: PicaClient; seen: number[] }> {
  const server = new FakeServer();
  const alice = client(server);
  const seen: number[] = [];
  alice.on("message", ({ message }) => seen.push(message.seq));
  await alice.start();
  server.deliver("d:7:8", 8, "one");
  await alice.next("message");
  return { server, alice, seen };
}

test("messages missed while disconnected arrive by sync, once each and in order", async () => {
  const { server, alice, seen } = await chatting();
  server.dropAll();
  await alice.next("disconnected");
  server.deliver("d:7:8", 8, "two", false);
  server.deliver("d:7:8", 8, "three", false);
  await alice.next("connected");
  server.deliver("d:7:8", 8, "four");
  await alice.next("message", { filter: (e) => e.message.seq === 4 });
  assert.deepEqual(seen, [1, 2, 3, 4]);
  const syncs = server.received.filter((f) => f.t === "sync");
  assert.deepEqual(syncs[syncs.length - 1].cursors, { "d:7:8": 1 });
  alice.close();
});

test("a send whose ack was lost is re-sent with its id after the reconnect and stored once", async () => {
  const server = new FakeServer();
  const alice = client(server);
  await alice.start();
  server.swallowAcks = true;
  const sending = alice.send({ to: 8, text: "exactly once" });
  await new Promise((resolve) => setTimeout(resolve, 20));
  server.swallowAcks = false;
  server.dropAll();
  const sent = await sending;
  const tries = server.received.filter((f) => f.t === "send");
  assert.equal(tries.length, 2);
  assert.equal(tries[0].client_msg_id, tries[1].client_msg_id);
  assert.equal(server.count(sent.client_msg_id), 1);
  assert.equal(sent.duplicate, true);
  alice.close();
});

test("a push that skips ahead waits for the late one, or a sync fills the hole", async () => {
  const { server, alice, seen } = await chatting();
  server.deliver("d:7:8", 8, "lost push", false);
  server.deliver("d:7:8", 8, "three");
  await alice.next("message", { filter: (e) => e.message.seq === 3 });
  assert.deepEqual(seen, [1, 2, 3]);
  alice.close();
});

test("the outbox and the cursors survive a restart of the client", async () => {
  const server = new FakeServer();
  const storage = new MemoryStorage();
  const first = client(server, storage);
  await first.start();
  server.deliver("d:7:8", 8, "before the restart");
  await first.next("message");
  server.swallowAcks = true;
  void first.send({ to: 8, text: "queued" }).catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 20));
  first.close();
  server.swallowAcks = false;

  const second = client(server, storage);
  assert.equal(second.pending().length, 1);
  const acked = second.next("ack");
  const seen: number[] = [];
  second.on("message", ({ message }) => seen.push(message.seq));
  await second.start();
  const { sent } = await acked;
  assert.equal(server.count(sent.client_msg_id), 1);
  assert.deepEqual(seen, [], "nothing is handed over twice, and our own message is an ack, not news");
  assert.equal(second.pending().length, 0);
  second.close();
});

test("a send refused by a rate limit is tried again after the retry_after the server gave, not sooner", async () => {
  const server = new FakeServer();
  const alice = client(server);
  await alice.start();
  server.rateLimited = 2;
  const sent = await alice.send({ to: 8, text: "patient" });
  const tries = server.received.filter((f) => f.t === "send");
  const at = server.receivedAt.filter((_, i) => server.received[i].t === "send");
  assert.equal(tries.length, 3);
  assert.equal(new Set(tries.map((f) => f.client_msg_id)).size, 1, "the same id every time");
  assert.ok(at[1] - at[0] >= 190 && at[2] - at[1] >= 190, `waited ${at[1] - at[0]} and ${at[2] - at[1]} ms`);
  assert.equal(server.count(sent.client_msg_id), 1);
  assert.equal(alice.pending().length, 0);
  alice.close();
});

test("a send refused for good rejects, leaves the outbox and says so", async () => {
  const server = new FakeServer();
  const alice = client(server);
  await alice.start();
  const failed = alice.next("sendFailed");
  await assert.rejects(alice.send({ to: 8, text: "x", clientMsgId: "~reserved" }), (exc: any) => exc.code === "bad_request");
  assert.equal((await failed).item.client_msg_id, "~reserved");
  assert.equal(alice.pending().length, 0);
  alice.close();
});
