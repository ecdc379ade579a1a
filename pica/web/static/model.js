// The page's state: conversations, their messages (recalls, edits and deletions applied), names, presence, typing,
// and the sends still waiting for their ack. No DOM here: the store says what changed, ui.js draws it. No protocol
// either: ordering, cursors, sync and the outbox are the SDK's (pica-client.js, built from sdk/js), which hands this
// module each message once and in order.

import { callRecordText } from "./calls.js"; // calls: hook
import { directId } from "./pica-client.js";
import { applyPreviewEvent, withPreview } from "./previews.js";
import { applyInOrder } from "./reactions.js"; // reactions, replies, threads, mentions: hook

export { directId };

// The server announces limits.recall_window in `ready`; a live binding, so importers see the update. The server
// has the last word anyway: a late recall is refused.
export let RECALL_WINDOW_MS = 120000;
export function setRecallWindow(seconds) {
  if (seconds > 0) RECALL_WINDOW_MS = seconds * 1000;
}

function load(key, fallback) {
  try {
    const raw = localStorage.getItem(key);
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function save(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // storage full or disabled: the page still works, it just forgets more on reload
  }
}

/** The peer of a 1:1 conversation id `d:<low>:<high>` (yourself for notes to self). */
export function peerOf(conversationId, me) {
  const parts = conversationId.split(":");
  if (parts[0] !== "d" || parts.length !== 3) return 0;
  const low = Number(parts[1]);
  const high = Number(parts[2]);
  return low === me ? high : low;
}

export function isEvent(body) {
  return Boolean(body && (body.recall || body.edit || body.reaction || body.preview));
}

/**
 * Whether a message, as this user sees it, may stand for its conversation (the list's preview): not a recall, edit
 * or reaction event, not recalled, not deleted for me. The server's list applies the same rule to `last_message`
 * (pica/protocol/bodies.py, `stands_for_conversation`): the two change together.
 */
export function standsForConversation(body) {
  return Boolean(body) && !("recall" in body || "edit" in body || "reaction" in body || "preview" in body
    || "recalled" in body
    || "deleted" in body);
}

export class Store {
  /** `client`: the SDK's PicaClient, whose cursors a conversation's start (from the list) and its end (left) move. */
  constructor(me, client) {
    this.me = me; // {user_id, username, token}
    this.client = client;
    this.prefix = `pica.${me.user_id}.`;
    this.names = new Map(Object.entries(load(this.prefix + "names", {})).map(([k, v]) => [Number(k), v]));
    this.names.set(me.user_id, me.username);
    this.conversations = new Map();
    this.presence = new Map(); // user_id -> {online, last_seen}
    this.typing = new Map(); // conversation_id -> Map(user_id -> expires_at ms)
    this.clockSkew = 0; // server time - local time, from ready.time
    this.changed = { list: false, conversations: new Set(), header: false };
    this.onChange = () => {};
    this._saveTimer = null;
    // Sends the SDK kept from an earlier visit (re-sent after the next ready): shown as pending until acked.
    for (const item of client.pending()) {
      if (item.frame.t === "send") this.addPending({ conversation_id: item.conversation_id,
        client_msg_id: item.client_msg_id, body: item.frame.body, ts: item.queued_at });
    }
  }

  // ------------------------------------------------------------------------------------------------ change tracking

  touch(conversationId, { list = true } = {}) {
    if (conversationId) this.changed.conversations.add(conversationId);
    if (list) this.changed.list = true;
    this.onChange();
  }

  takeChanges() {
    const changes = this.changed;
    this.changed = { list: false, conversations: new Set(), header: false };
    return changes;
  }

  persistSoon() {
    if (this._saveTimer) return;
    this._saveTimer = setTimeout(() => {
      this._saveTimer = null;
      this.persistNow();
    }, 300);
  }

  persistNow() {
    save(this.prefix + "names", Object.fromEntries(this.names));
  }

  /** The user left a conversation (or was removed): the server no longer syncs it, so its cursor goes (8.6). */
  dropCursor(conversationId) {
    this.client.cursors.drop(conversationId);
    this.client.persist();
  }

  // ------------------------------------------------------------------------------------------------ names

  learnName(userId, username) {
    if (!userId || !username || this.names.get(userId) === username) return;
    this.names.set(userId, username);
    this.persistSoon();
    this.changed.list = true;
    this.changed.header = true;
    this.onChange();
  }

  nameOf(userId, { you = true } = {}) {
    if (userId === this.me.user_id && you) return "You";
    const known = this.names.get(userId);
    if (known) return known;
    this.resolveName(userId); // asks the server once; learnName re-renders when the answer comes
    return `User ${userId}`;
  }

  // Replaced by the app with a lookup of GET /v1/users/{id}.
  resolveName(_userId) {}

  // ------------------------------------------------------------------------------------------------ conversations

  conversation(id) {
    let conv = this.conversations.get(id);
    if (!conv) {
      const kind = id.startsWith("g:") ? "group" : "direct";
      conv = {
        id,
        kind,
        name: "",
        peerId: kind === "direct" ? peerOf(id, this.me.user_id) : 0,
        groupId: kind === "group" ? Number(id.slice(2)) : 0,
        lastSeq: 0,
        lastTs: 0,
        lastMessage: null,
        readSeq: 0,
        peerReadSeq: 0,
        peerDeliveredSeq: 0,
        messages: new Map(), // seq -> msg, deduplicated by seq
        patches: new Map(), // target seq -> latest recall/edit/delete applying to it
        pending: new Map(), // client_msg_id -> unacknowledged send
        historyState: "none", // none | loading | partial | complete
        known: false, // listed by GET /v1/conversations
        memberCount: 0,
        myRole: "", // a group: mine ("owner", "admin", "member"), read with the group; "" until then
      };
      this.conversations.set(id, conv);
    }
    return conv;
  }

  displayName(conv) {
    if (conv.kind === "direct") {
      if (conv.peerId === this.me.user_id) return `${this.me.username} (notes)`;
      return conv.name || this.nameOf(conv.peerId);
    }
    return conv.name || `Group ${conv.groupId}`;
  }

  unread(conv) {
    return Math.max(0, conv.lastSeq - conv.readSeq);
  }

  mayAddMembers(conv) {
    return conv.kind === "group" && !conv.left && !conv.dissolved && (conv.myRole === "owner" || conv.myRole === "admin");
  }

  /** Conversations pinned to the top first (the latest pin first), then by last activity, newest first. */
  ordered() {
    const top = (c) => (c.settings && c.settings.pinned_at) || 0;
    return [...this.conversations.values()]
      .filter((c) => !c.left && (c.known || c.lastSeq > 0 || c.pending.size > 0 || c.localCreated))
      .sort((a, b) => (top(b) - top(a)) || (b.lastTs - a.lastTs) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Merge one line of GET /v1/conversations. */
  mergeSummary(s) {
    const conv = this.conversation(s.conversation_id);
    conv.known = true;
    conv.kind = s.kind === "group" ? "group" : "direct";
    if (s.kind === "direct") {
      conv.peerId = s.peer_id;
      if (s.name) this.names.set(s.peer_id, s.name);
      conv.peerReadSeq = Math.max(conv.peerReadSeq, s.peer_read_seq || 0);
      conv.peerDeliveredSeq = Math.max(conv.peerDeliveredSeq, s.peer_delivered_seq || 0);
    } else {
      conv.groupId = s.group_id;
      conv.name = s.name || conv.name;
    }
    if (s.last_seq >= conv.lastSeq) {
      conv.lastSeq = s.last_seq;
      conv.lastTs = s.last_ts;
      conv.lastMessage = s.last_message || null; // the newest one I can see, or none (23.3)
      conv.unreadMentions = s.unread_mentions || 0;
    }
    conv.readSeq = Math.max(conv.readSeq, s.read_seq || 0);
    conv.settings = s.settings || null; // my draft and list settings (forward.js, protocol 29.3)
    // A conversation this page has no cursor for starts at its current end: older messages come by history on
    // demand, not by a sync of the whole past.
    this.client.cursors.startAt(conv.id, s.last_seq);
    this.touch(conv.id);
  }

  // ------------------------------------------------------------------------------------------------ messages

  /** A message handed over in order (NEW): timeline, conversation line, events, read state. */
  ingest(msg) {
    if (msg.conversation_id.startsWith("u:")) {
      // My own timeline: "delete for me" notices from my other devices, and my removals from groups.
      const event = msg.body?.system;
      if (event && event.event === "deleted") this.patch(event.conversation_id, event.seq, { kind: "deleted", seq: msg.seq });
      if (event && event.event === "removed_from_group") this.removedFrom(event);
      return;
    }
    const conv = this.conversation(msg.conversation_id);
    if (msg.seq >= conv.lastSeq) {
      conv.lastSeq = msg.seq;
      conv.lastTs = msg.ts;
    }
    if (standsForConversation(msg.body) && msg.seq >= (conv.lastMessage?.seq || 0)) conv.lastMessage = msg;
    // Sending (a message, an event, a group action) marks the conversation read for the sender (server rule).
    if (msg.sender === this.me.user_id) conv.readSeq = Math.max(conv.readSeq, msg.seq);
    const system = msg.body?.system;
    if (system) this.applyNotice(conv, system);
    this.insert(msg);
    applyInOrder(this, conv, msg); // a reaction changes its target, a thread message its root
    const typers = this.typing.get(conv.id);
    if (typers && typers.delete(msg.sender)) this.changed.header = true;
    this.touch(conv.id);
  }

  /** I was removed from a group (told in my own timeline, 12.2): it stays listed, as left. */
  removedFrom(event) {
    const conv = this.conversations.get(event.conversation_id);
    if (!conv || conv.left) return;
    conv.left = true;
    this.dropCursor(conv.id);
    this.touch(conv.id);
  }

  /** A group notice changes what the page knows about the group (docs/protocol.md 12.3). */
  applyNotice(conv, event) {
    const me = this.me.user_id;
    const listed = Array.isArray(event.user_ids) ? event.user_ids : [];
    switch (event.event) {
      case "renamed":
        if (event.name) conv.name = event.name;
        break;
      case "created":
      case "members_added":
        if (listed.includes(me)) conv.left = false;
        conv.staleInfo = true; // the member count is re-read with the group
        break;
      case "members_removed":
      case "member_left":
        conv.staleInfo = true;
        if (listed.includes(me)) {
          // Our access ends with this notice: the server no longer syncs this conversation (8.6).
          conv.left = true;
          this.dropCursor(conv.id);
        }
        break;
      case "dissolved":
        conv.dissolved = true;
        break;
      case "role_changed":
      case "owner_changed":
        conv.staleInfo = true; // my role may be another now: it is re-read with the group
        break;
      default:
        break; // unknown events are ignored
    }
    this.changed.header = true;
  }

  /** Put a message in its conversation's timeline (any source), deduplicated by seq, events applied. */
  insert(msg) {
    if (msg.conversation_id.startsWith("u:")) return;
    const conv = this.conversation(msg.conversation_id);
    const body = msg.body || {};
    if (body.recall) {
      this.patch(conv.id, body.recall.seq, { kind: "recall", seq: msg.seq, ts: msg.ts });
      scrubEdits(conv, body.recall.seq);
    }
    // An edit of a message recalled since has no text (protocol 13.1): the recall it precedes is what applies.
    if (body.edit && typeof body.edit.text === "string") {
      this.patch(conv.id, body.edit.seq, { kind: "edit", seq: msg.seq, ts: msg.ts, text: body.edit.text });
    }
    if (body.preview) applyPreviewEvent(conv, body.preview); // link previews: previews.js
    const existing = conv.messages.get(msg.seq);
    const copy = { ...msg, body: { ...body } };
    if (existing && existing.body.recalled) copy.body = existing.body; // recall is final
    const patch = conv.patches.get(msg.seq);
    if (patch) applyPatch(copy, patch);
    withPreview(conv, copy);
    conv.messages.set(msg.seq, copy);
    if (msg.sender === this.me.user_id) conv.pending.delete(msg.client_msg_id);
    this.changed.conversations.add(conv.id);
  }

  patch(conversationId, targetSeq, patch) {
    const conv = this.conversation(conversationId);
    const previous = conv.patches.get(targetSeq);
    const rank = { edit: 0, recall: 1, deleted: 2 };
    if (previous && (rank[previous.kind] > rank[patch.kind] || (previous.kind === patch.kind && previous.seq > patch.seq))) {
      return;
    }
    conv.patches.set(targetSeq, patch);
    const target = conv.messages.get(targetSeq);
    if (target) applyPatch(target, patch);
    if (conv.lastMessage && conv.lastMessage.seq === targetSeq) {
      const copy = { ...conv.lastMessage, body: { ...conv.lastMessage.body } };
      applyPatch(copy, patch);
      // Recalled or deleted for me: the message before it stands for the conversation now, if this page has it;
      // otherwise the server's list says which (the app asks for it).
      conv.lastMessage = standsForConversation(copy.body) ? copy : this.lastStanding(conv, targetSeq);
      if (!conv.lastMessage) this.needList();
    }
    this.touch(conversationId);
  }

  /** Newest contiguous block of loaded messages, ascending: what the timeline shows. */
  timeline(conv) {
    if (conv.messages.size === 0) return [];
    const seqs = [...conv.messages.keys()].sort((a, b) => a - b);
    let start = seqs.length - 1;
    while (start > 0 && seqs[start - 1] === seqs[start] - 1) start -= 1;
    return seqs.slice(start).map((seq) => conv.messages.get(seq));
  }

  /** The newest loaded message before `seq` that may stand for the conversation, if it is contiguous with it. */
  lastStanding(conv, seq) {
    for (let at = seq - 1; conv.messages.has(at); at -= 1) {
      const msg = conv.messages.get(at);
      if (standsForConversation(msg.body)) return msg;
    }
    return null;
  }

  // Replaced by the app: refresh the conversation list from the server soon.
  needList() {}

  oldestLoaded(conv) {
    const shown = this.timeline(conv);
    return shown.length ? shown[0].seq : null;
  }

  // ------------------------------------------------------------------------------------------------ pending sends

  /** A send waiting for its ack (the SDK's outbox holds and re-sends it): shown in its conversation meanwhile. */
  addPending(item) {
    this.conversation(item.conversation_id).pending.set(item.client_msg_id, item);
    this.touch(item.conversation_id);
  }

  /** A send refused for good: it stays shown, marked failed, until the page is reloaded. */
  failPending(clientMsgId, reason) {
    for (const conv of this.conversations.values()) {
      const item = conv.pending.get(clientMsgId);
      if (item) {
        item.failed = reason;
        this.touch(conv.id);
        return item;
      }
    }
    return null;
  }

  // ------------------------------------------------------------------------------------------------ receipts, presence, typing

  receipt(frame) {
    const conv = this.conversations.get(frame.conversation_id);
    if (!conv) return;
    if (frame.user_id === this.me.user_id) {
      if (frame.read) conv.readSeq = Math.max(conv.readSeq, frame.read); // read on another of my devices
      if (conv.readSeq >= conv.lastSeq) conv.unreadMentions = 0;
    } else if (conv.kind === "direct" && frame.user_id === conv.peerId) {
      if (frame.read) {
        conv.peerReadSeq = Math.max(conv.peerReadSeq, frame.read);
        conv.peerDeliveredSeq = Math.max(conv.peerDeliveredSeq, frame.read);
      }
      if (frame.delivered) conv.peerDeliveredSeq = Math.max(conv.peerDeliveredSeq, frame.delivered);
    }
    this.touch(conv.id);
  }

  setPresence(userId, online, lastSeen) {
    this.presence.set(userId, { online, last_seen: lastSeen || 0 });
    this.changed.list = true;
    this.changed.header = true;
    this.onChange();
  }

  setTyping(conversationId, userId, untilMs) {
    if (userId === this.me.user_id) return;
    let typers = this.typing.get(conversationId);
    if (!typers) {
      typers = new Map();
      this.typing.set(conversationId, typers);
    }
    typers.set(userId, untilMs);
    this.changed.list = true;
    this.changed.header = true;
    this.onChange();
  }

  /** Who is typing in a conversation now (expired entries dropped). */
  typers(conversationId, now = Date.now()) {
    const typers = this.typing.get(conversationId);
    if (!typers) return [];
    for (const [userId, until] of typers) if (until <= now) typers.delete(userId);
    return [...typers.keys()];
  }

  /** Status of one of my messages in a 1:1: read, delivered, sent (groups: sent). */
  statusOf(conv, msg) {
    if (conv.kind === "direct" && conv.peerId !== this.me.user_id) {
      if (msg.seq <= conv.peerReadSeq) return "read";
      if (msg.seq <= conv.peerDeliveredSeq) return "delivered";
    }
    return "sent";
  }

  serverNow() {
    return Date.now() + this.clockSkew;
  }
}

/** A recall hides the text of the target's earlier edit events too, as the server's copies read afterwards. */
function scrubEdits(conv, targetSeq) {
  for (const held of conv.messages.values()) {
    if (held.body.edit && held.body.edit.seq === targetSeq) held.body = { edit: { seq: targetSeq, recalled: true } };
  }
}

function applyPatch(msg, patch) {
  if (patch.kind === "deleted") {
    msg.body = { deleted: true };
  } else if (patch.kind === "recall") {
    msg.body = { recalled: true };
  } else if (patch.kind === "edit" && !msg.body.recalled && !msg.body.deleted) {
    // The server's copy of an edited message carries "edited": <ts of the edit>; never go back to an older edit.
    if (!msg.body.edited || msg.body.edited <= patch.ts) msg.body = { ...msg.body, text: patch.text, edited: patch.ts };
  }
}

/** The list's marks of my own state of a conversation (docs/protocol.md 29.3). */
export function marksOf(conv, now = Date.now()) {
  const s = conv.settings || {};
  return {
    top: Boolean(s.pinned_at),
    archived: Boolean(s.archived),
    unread: Boolean(s.marked_unread),
    muted: typeof s.muted_until === "number" && s.muted_until > now,
    draft: typeof s.draft === "string" ? s.draft : "",
  };
}

/** One line of text for a message: timeline bubbles and conversation previews. */
export function describe(store, msg, { preview = false } = {}) {
  const body = msg.body || {};
  if (body.deleted) return "message deleted";
  if (body.recalled) return "message recalled";
  if (body.recall) return "message recalled";
  if (body.edit) return preview ? (typeof body.edit.text === "string" ? `✎ ${body.edit.text}` : "message recalled") : "";
  if (body.preview) return "";
  if (body.system) return noticeText(store, msg.sender, body.system);
  if (body.call) return callRecordText(body, msg.sender === store.me.user_id); // calls: hook
  const attachment = body.file || body.image;
  if (attachment && typeof attachment === "object") {
    const line = `${body.image ? "🖼" : "📎"} ${typeof attachment.name === "string" ? attachment.name : "attachment"}`;
    return typeof body.text === "string" ? `${line}\n${body.text}` : line;
  }
  if (typeof body.text === "string") return body.text;
  if ("custom" in body) return `[${typeof body.type === "string" ? body.type : "custom"} message]`;
  return "[unsupported message]";
}

export function noticeText(store, actor, event) {
  const by = store.nameOf(event.by || actor);
  const list = Array.isArray(event.user_ids)
    ? event.user_ids.map((id) => store.nameOf(id)).join(", ")
    : `${event.count || "several"} people`;
  switch (event.event) {
    case "created": return `${by} created the group “${event.name || ""}”`;
    case "members_added": return `${by} added ${list}`;
    case "members_removed": return `${by} removed ${list}`;
    case "member_left": return `${list} left the group`;
    case "role_changed": return `${by} made ${list} ${event.role === "admin" ? "an admin" : "a member"}`;
    case "owner_changed": return `${by} handed the group to ${store.nameOf(event.user_id)}`;
    case "renamed": return `${by} renamed the group to “${event.name || ""}”`;
    case "muted": return `${by} muted ${list}`;
    case "unmuted": return `${by} unmuted ${list}`;
    case "group_muted": return `${by} muted the group`;
    case "group_unmuted": return `${by} unmuted the group`;
    case "dissolved": return `${by} dissolved the group`;
    case "pinned": return `${by} pinned a message`;
    case "unpinned": return `${by} unpinned a message`;
    default: return `${by}: ${String(event.event || "update")}`;
  }
}
