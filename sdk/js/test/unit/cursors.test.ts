// The ordering rules of docs/protocol.md 8.6, as a client meets them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CursorTracker, GapBuffer } from "../../src/cursors.js";

const m = (conversation_id: string, seq: number) => ({ conversation_id, seq });

test("messages of a brand-new conversation start at seq 1; anything else waits for a sync", () => {
  const cursors = new CursorTracker();
  assert.equal(cursors.accept(m("d:1:2", 2)), "gap");
  assert.equal(cursors.accept(m("d:1:2", 1)), "new");
  assert.equal(cursors.accept(m("d:1:2", 2)), "new");
  assert.equal(cursors.cursor("d:1:2"), 2);
});

test("a message seen live and again in a sync page is handed over once", () => {
  const cursors = new CursorTracker({ "g:3": 10 });
  assert.equal(cursors.accept(m("g:3", 11)), "new");
  assert.equal(cursors.acceptSynced(m("g:3", 11)), "duplicate");
  assert.equal(cursors.acceptSynced(m("g:3", 12)), "new");
  assert.equal(cursors.accept(m("g:3", 12)), "duplicate");
});

test("a sync page starts an unknown conversation's cursor right below its first message", () => {
  const cursors = new CursorTracker();
  assert.equal(cursors.acceptSynced(m("g:9", 40)), "new");
  assert.equal(cursors.acceptSynced(m("g:9", 41)), "new");
  assert.deepEqual(cursors.snapshot(), { "g:9": 41 });
});

test("a push ahead of its turn is held, then handed over in order when the late one comes", () => {
  const cursors = new CursorTracker({ "d:1:2": 4 });
  const held = new GapBuffer(cursors);
  assert.equal(cursors.accept(m("d:1:2", 7)), "gap");
  assert.ok(held.hold(m("d:1:2", 7)));
  assert.equal(cursors.accept(m("d:1:2", 6)), "gap");
  assert.ok(held.hold(m("d:1:2", 6)));
  assert.deepEqual(held.release("d:1:2"), []);
  assert.equal(cursors.accept(m("d:1:2", 5)), "new");
  assert.deepEqual(held.release("d:1:2").map((x) => x.seq), [6, 7]);
  assert.equal(held.waiting("d:1:2"), false);
  assert.equal(cursors.cursor("d:1:2"), 7);
});

test("nothing is held for a conversation without a cursor, nor past the limit", () => {
  const cursors = new CursorTracker({ "d:1:2": 0 });
  const held = new GapBuffer(cursors, 2);
  assert.equal(held.hold(m("g:1", 5)), false);
  assert.ok(held.hold(m("d:1:2", 3)));
  assert.ok(held.hold(m("d:1:2", 4)));
  assert.equal(held.hold(m("d:1:2", 5)), false);
});

test("what a complete sync did not return is forgotten; what came after the mark stays", () => {
  const cursors = new CursorTracker({ "g:2": 8 });
  const held = new GapBuffer(cursors);
  held.hold(m("g:2", 10));
  const mark = held.mark();
  held.hold(m("g:2", 12));
  held.forget(mark);
  assert.deepEqual(held.heldSeqs("g:2"), [12]);
});
