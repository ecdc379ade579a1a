// Reconnect pacing of docs/protocol.md section 22: exponential, capped, full jitter.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff } from "../../src/backoff.js";

test("the window doubles per attempt up to the cap", () => {
  const backoff = new Backoff({ baseMs: 500, capMs: 15_000 });
  const top = () => 0.999999;
  assert.ok(Math.abs(backoff.delay(0, top) - 500) < 1);
  assert.ok(Math.abs(backoff.delay(1, top) - 1000) < 1);
  assert.ok(Math.abs(backoff.delay(4, top) - 8000) < 1);
  assert.ok(Math.abs(backoff.delay(5, top) - 15_000) < 1);
  assert.ok(Math.abs(backoff.delay(500, top) - 15_000) < 1);
});

test("full jitter: any delay from zero to the window, spread over it", () => {
  const backoff = new Backoff({ baseMs: 100, capMs: 1000 });
  assert.equal(backoff.delay(3, () => 0), 0);
  const delays = Array.from({ length: 2000 }, () => backoff.delay(3));
  assert.ok(delays.every((d) => d >= 0 && d < 800));
  const low = delays.filter((d) => d < 400).length;
  assert.ok(low > 700 && low < 1300, `about half below the middle, got ${low}`);
});
