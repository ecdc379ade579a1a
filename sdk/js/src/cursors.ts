// Client-side ordering and de-duplication of docs/protocol.md section 8.6, sans-I/O (a port of
// pica/client/cursors.py): one cursor per conversation, so messages reach the application once each, in seq order,
// whether they came live or by sync.

/** The smallest part of a message ordering needs. */
export interface Ordered {
  conversation_id: string;
  seq: number;
}

export type Verdict = "new" | "duplicate" | "gap";

export class CursorTracker {
  private readonly cursors: Map<string, number>;

  constructor(cursors: Record<string, number> | Map<string, number> = {}) {
    this.cursors = new Map(cursors instanceof Map ? cursors : Object.entries(cursors));
  }

  /** The highest seq handed to the application with nothing missing below it; 0 when unknown. */
  cursor(conversationId: string): number {
    return this.cursors.get(conversationId) ?? 0;
  }

  knows(conversationId: string): boolean {
    return this.cursors.has(conversationId);
  }

  /** Start a conversation's cursor at `seq` (e.g. its end, from the conversation list) unless it has one. */
  startAt(conversationId: string, seq: number): void {
    if (!this.cursors.has(conversationId)) this.cursors.set(conversationId, seq);
  }

  /** Forget a conversation (after the user left it: the server no longer syncs it). */
  drop(conversationId: string): void {
    this.cursors.delete(conversationId);
  }

  snapshot(): Record<string, number> {
    return Object.fromEntries(this.cursors);
  }

  /** Classify a live message (or our own send's ack) and, when it is NEW, advance the cursor past it. */
  accept(msg: Ordered): Verdict {
    let current = this.cursors.get(msg.conversation_id);
    if (current === undefined) {
      // Never seen: only a sync says where it starts, unless this is its very first message.
      if (msg.seq !== 1) return "gap";
      current = 0;
    }
    if (msg.seq <= current) return "duplicate";
    if (msg.seq !== current + 1) return "gap";
    this.cursors.set(msg.conversation_id, msg.seq);
    return "new";
  }

  /** A message of a synced page: the first one of a conversation new to us is where its cursor starts. */
  acceptSynced(msg: Ordered): Verdict {
    if (!this.cursors.has(msg.conversation_id)) this.cursors.set(msg.conversation_id, msg.seq - 1);
    return this.accept(msg);
  }
}

/**
 * Live messages that came ahead of their turn, held for a moment in case the missing ones are only late (in a
 * cluster, pushes committed on different nodes can swap places, section 8.5). The caller decides how long to wait;
 * this class keeps the messages and says which are next.
 */
export class GapBuffer<M extends Ordered = Ordered> {
  private readonly held = new Map<string, Map<number, M>>();

  constructor(private readonly cursors: CursorTracker, private readonly limit = 1000) {}

  /** False when waiting cannot help (no cursor yet) or too many are held already: sync now. */
  hold(msg: M): boolean {
    if (!this.cursors.knows(msg.conversation_id)) return false;
    let held = this.held.get(msg.conversation_id);
    if (!held) {
      held = new Map();
      this.held.set(msg.conversation_id, held);
    }
    if (held.size >= this.limit && !held.has(msg.seq)) return false;
    held.set(msg.seq, msg);
    return true;
  }

  /** The held messages that are next in line now, accepted and in order; those the cursor passed are dropped. */
  release(conversationId: string): M[] {
    const held = this.held.get(conversationId);
    if (!held) return [];
    const out: M[] = [];
    for (const seq of [...held.keys()]) if (seq <= this.cursors.cursor(conversationId)) held.delete(seq);
    let next = held.get(this.cursors.cursor(conversationId) + 1);
    while (next !== undefined) {
      held.delete(next.seq);
      if (this.cursors.accept(next) === "new") out.push(next);
      next = held.get(this.cursors.cursor(conversationId) + 1);
    }
    if (held.size === 0) this.held.delete(conversationId);
    return out;
  }

  waiting(conversationId: string): boolean {
    return this.held.has(conversationId);
  }

  conversations(): string[] {
    return [...this.held.keys()];
  }

  /** What is held now: hand it to forget() once a sync that started after this has completed. */
  mark(): Map<string, Set<number>> {
    return new Map([...this.held].map(([id, held]) => [id, new Set(held.keys())]));
  }

  /**
   * Drop what was held before a complete sync and is still not next: the sync returned neither it nor what is
   * missing before it, so the user cannot see them (the notice of their own removal is pushed once, never synced).
   */
  forget(marked: Map<string, Set<number>>): void {
    for (const [id, seqs] of marked) {
      const held = this.held.get(id);
      if (!held) continue;
      for (const seq of seqs) held.delete(seq);
      if (held.size === 0) this.held.delete(id);
    }
  }

  heldSeqs(conversationId: string): number[] {
    return [...(this.held.get(conversationId)?.keys() ?? [])].sort((a, b) => a - b);
  }
}
