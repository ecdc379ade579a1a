// Reconnect pacing of docs/protocol.md section 22: exponential backoff with full jitter.

export interface BackoffOptions {
  /** Milliseconds of the first step (default 500). */
  baseMs?: number;
  /** Most milliseconds one wait may take (default 15,000). */
  capMs?: number;
}

export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;

  constructor({ baseMs = 500, capMs = 15_000 }: BackoffOptions = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
  }

  /**
   * Milliseconds to wait before attempt `attempt` (0 for the first retry): uniform in [0, min(cap, base * 2^attempt)).
   * Full jitter spreads a crowd that lost its server at one moment over the whole window instead of in lockstep.
   */
  delay(attempt: number, random: () => number = Math.random): number {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** Math.min(Math.max(attempt, 0), 30));
    return random() * ceiling;
  }
}
