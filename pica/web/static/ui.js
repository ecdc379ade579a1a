// Rendering. Every piece of user-supplied text goes into the page through textContent (or a Text node), never as
// markup. The view reads the store and calls the handlers app.js gives it; it keeps no chat state of its own beyond
// DOM caches.

import { attachmentNode, openViewer } from "./files.js";
import { describe, isEvent, marksOf, RECALL_WINDOW_MS } from "./model.js";
import { decorate, inThread, signature } from "./reactions.js";
import { previewNode, previewSig } from "./previews.js";

const $ = (id) => document.getElementById(id);

/** Create an element. Strings among the children become Text nodes (Element.append), never markup. */
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "testid") node.dataset.testid = value;
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined && child !== false) node.append(child);
  return node;
}

// ------------------------------------------------------------------------------------------------ formatting

function hue(key) {
  let hash = 2166136261; // FNV-1a, then spread by the golden angle so that ids 5 and 6 look different
  for (const ch of String(key)) hash = Math.imul(hash ^ ch.codePointAt(0), 16777619) >>> 0;
  return Math.round((hash % 1000) * 137.508) % 360;
}

function initials(name) {
  const words = String(name).replace(/[^\p{L}\p{N} ]+/gu, " ").trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return "?";
  if (words.length === 1) return [...words[0]].slice(0, 2).join("").toUpperCase();
  return ([...words[0]][0] + [...words[1]][0]).toUpperCase();
}

export function paintAvatar(node, name, key) {
  node.textContent = initials(name);
  node.style.setProperty("--hue", String(hue(key)));
}

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function listTime(ts) {
  if (!ts) return "";
  const date = new Date(ts);
  const now = new Date();
  if (sameDay(date, now)) return clock(ts);
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (sameDay(date, yesterday)) return "Yesterday";
  if (now - date < 6 * 86400000) return date.toLocaleDateString([], { weekday: "short" });
  return date.toLocaleDateString([], { day: "numeric", month: "short" });
}

function dayLabel(ts) {
  const date = new Date(ts);
  const now = new Date();
  if (sameDay(date, now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (sameDay(date, yesterday)) return "Yesterday";
  return date.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long",
    year: date.getFullYear() === now.getFullYear() ? undefined : "numeric" });
}

function lastSeenText(lastSeen) {
  if (!lastSeen) return "offline";
  const ago = Date.now() - lastSeen;
  if (ago < 60000) return "last seen just now";
  if (ago < 3600000) return `last seen ${Math.floor(ago / 60000)} min ago`;
  if (sameDay(new Date(lastSeen), new Date())) return `last seen today at ${clock(lastSeen)}`;
  return `last seen ${new Date(lastSeen).toLocaleDateString([], { day: "numeric", month: "short" })}`;
}

const STATUS_LABEL = { sending: "Sending…", failed: "Not sent", sent: "Sent", delivered: "Delivered", read: "Read" };
const STATUS_TICK = { sending: "◷", failed: "!", sent: "✓", delivered: "✓✓", read: "✓✓" };

function typingText(store, typers) {
  const names = typers.map((id) => store.nameOf(id, { you: false }));
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return `${names.length} people are typing…`;
}

// ------------------------------------------------------------------------------------------------ the view

export class View {
  constructor(handlers) {
    this.handlers = handlers;
    this.authMode = "login";
    this.nodes = new Map(); // timeline key -> {sig, node}
    this.renderedConvId = null;
    this.stickToBottom = false;
    this.bannerTimer = null;
    this.toastTimer = null;
    this.closeMenu = null;
    this._bind();
  }

  _bind() {
    $("auth-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.handlers.onAuth(this.authMode, $("auth-username").value.trim(), $("auth-password").value);
    });
    $("auth-toggle").addEventListener("click", () => this.showAuth(this.authMode === "login" ? "register" : "login"));
    $("new-chat").addEventListener("click", () => this.handlers.onNewChat());
    $("new-group").addEventListener("click", () => this.handlers.onNewGroup());
    $("logout").addEventListener("click", () => this.handlers.onLogout());
    $("back").addEventListener("click", () => this.handlers.onBack());
    $("add-member").addEventListener("click", () => this.handlers.onAddMember());
    const find = $("find");
    find.addEventListener("input", () => this.handlers.onFind(find.value));
    find.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && find.value) {
        event.preventDefault();
        this.clearFind();
      }
    });
    $("find-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.handlers.onFindSubmit(find.value);
    });
    $("toast").addEventListener("click", () => this.hideToast());

    const input = $("composer-input");
    input.addEventListener("input", () => {
      this._autosize();
      $("send").disabled = input.value.trim() === "";
      if (input.value.trim() !== "") this.handlers.onTyping();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value;
      if (text.trim() === "") return;
      input.value = "";
      $("send").disabled = true;
      this._autosize();
      this.stickToBottom = true;
      this.handlers.onSend(text);
      input.focus();
    });

    // Files: the attach button, a file dropped on the conversation, an image pasted into the message box.
    $("attach").addEventListener("click", () => $("attach-input").click());
    $("attach-input").addEventListener("change", () => {
      const picked = [...$("attach-input").files];
      $("attach-input").value = "";
      if (picked.length) this.handlers.onAttach(picked);
    });
    $("timeline").addEventListener("dragover", (event) => event.preventDefault());
    $("timeline").addEventListener("drop", (event) => {
      event.preventDefault();
      const dropped = [...(event.dataTransfer?.files || [])];
      if (dropped.length) this.handlers.onAttach(dropped);
    });
    input.addEventListener("paste", (event) => {
      const pasted = [...(event.clipboardData?.files || [])];
      if (pasted.length) {
        event.preventDefault();
        this.handlers.onAttach(pasted);
      }
    });
    $("record").addEventListener("click", () => this.handlers.onRecord());

    $("timeline").addEventListener("scroll", () => {
      if (this.closeMenu) this.closeMenu();
      if ($("timeline").scrollTop < 150) this.handlers.onNearTop();
    }, { passive: true });
    $("messages").addEventListener("click", (event) => {
      const button = event.target.closest("[data-menu-seq]");
      if (button) this._openMenu(button, Number(button.dataset.menuSeq));
    });
  }

  _autosize() {
    const input = $("composer-input");
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
  }

  // ---------------------------------------------------------------------------------------------- screens

  showAuth(mode = "login", error = "") {
    this.authMode = mode;
    $("app-view").hidden = true;
    $("auth-view").hidden = false;
    const register = mode === "register";
    $("auth-subtitle").textContent = register ? "Create your account" : "Sign in to continue";
    $("auth-submit").textContent = register ? "Create account" : "Sign in";
    $("auth-switch-text").textContent = register ? "Already have an account?" : "New here?";
    $("auth-toggle").textContent = register ? "Sign in" : "Create an account";
    $("auth-password").autocomplete = register ? "new-password" : "current-password";
    this.authError(error);
    this.authBusy(false);
  }

  authError(text) {
    $("auth-error").textContent = text || "";
    $("auth-error").hidden = !text;
  }

  authBusy(busy) {
    $("auth-submit").disabled = busy;
  }

  showApp(me) {
    $("auth-view").hidden = true;
    $("app-view").hidden = false;
    $("auth-password").value = "";
    $("me-name").textContent = me.username;
    paintAvatar($("me-avatar"), me.username, me.user_id);
  }

  setChatOpen(open) {
    $("app-view").classList.toggle("show-chat", open);
  }

  /** Whether the conversation pane is on screen (on a phone it is hidden behind the list). */
  chatVisible() {
    const chat = $("chat");
    return !$("app-view").hidden && chat.offsetWidth > 0 && chat.offsetHeight > 0;
  }

  focusComposer() {
    if (window.matchMedia("(min-width: 700px)").matches) $("composer-input").focus();
  }

  setConnection(state, detail = "") {
    const banner = $("banner");
    clearTimeout(this.bannerTimer);
    banner.classList.toggle("failed", state === "failed");
    if (state === "ready" || state === "stopped") {
      banner.hidden = true;
      banner.dataset.state = state;
      return;
    }
    const text = state === "failed" ? `Disconnected: ${detail}` : state === "connecting" ? "Connecting…" : "Reconnecting…";
    const show = () => {
      $("banner-text").textContent = text;
      banner.dataset.state = state;
      banner.hidden = false;
    };
    // The first connection usually takes a few milliseconds: do not flash a banner for it.
    if (state === "connecting") this.bannerTimer = setTimeout(show, 1500);
    else show();
  }

  /** The upload under the message box: "Sending cat.png… 40%", or hidden (null). */
  uploadProgress(text) {
    const line = $("upload-progress");
    line.hidden = text === null;
    line.textContent = text || "";
  }

  recording(on) {
    $("record").setAttribute("aria-pressed", String(on));
    $("record").classList.toggle("on", on);
    $("record").title = on ? "Stop and send the voice note" : "Record a voice note";
  }

  toast(text) {
    const toast = $("toast");
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => { toast.hidden = true; }, 3000);
  }

  hideToast() {
    clearTimeout(this.toastTimer);
    $("toast").hidden = true;
  }

  // ---------------------------------------------------------------------------------------------- list

  renderList(store, activeId, query = "") {
    const all = store.ordered();
    const wanted = query.trim().toLowerCase();
    const conversations = wanted ? all.filter((conv) => store.displayName(conv).toLowerCase().includes(wanted)) : all;
    $("list-empty").hidden = all.length > 0;
    // Archived conversations wait behind a toggle at the end (a search shows them all).
    const archived = wanted ? [] : conversations.filter((conv) => marksOf(conv).archived);
    const shown = wanted || this.showArchived ? conversations : conversations.filter((conv) => !marksOf(conv).archived);
    const items = shown.map((conv) => this._listItem(store, conv, conv.id === activeId));
    if (archived.length) {
      items.push(h("li", { class: "archived-toggle", testid: "archived-toggle", role: "button", tabindex: "0",
        text: this.showArchived ? "Hide archived" : `Archived (${archived.length})`,
        onclick: () => { this.showArchived = !this.showArchived; this.renderList(store, activeId, query); } }));
    }
    $("conversation-list").replaceChildren(...items);
  }

  clearFind() {
    $("find").value = "";
    this.handlers.onFind("");
  }

  /**
   * What the find field found beyond the list: `found` is {query, state: "looking" | "found" | "none" | "error",
   * user} or null (nothing to say).
   */
  renderFind(found) {
    const box = $("find-results");
    box.hidden = !found;
    if (!found) {
      box.replaceChildren();
      return;
    }
    if (found.state === "found") {
      const avatar = h("div", { class: "avatar", "aria-hidden": "true" });
      paintAvatar(avatar, found.user.username, found.user.user_id);
      const button = h("button", { type: "button", class: "text-button find-person", testid: "find-person",
        "data-username": found.user.username }, avatar, h("span", { text: `Chat with ${found.user.username}` }));
      button.addEventListener("click", () => this.handlers.onFindSubmit(found.query));
      box.replaceChildren(button);
      return;
    }
    const note = { looking: "Looking…", none: `No one is called “${found.query}”.`,
      error: "Cannot look people up right now." }[found.state];
    box.replaceChildren(h("p", { class: "find-note", testid: "find-note", text: note }));
  }

  _listItem(store, conv, active) {
    const name = store.displayName(conv);
    const avatar = h("div", { class: `avatar${conv.kind === "group" ? " group" : ""}`, "aria-hidden": "true" });
    paintAvatar(avatar, name, conv.kind === "group" ? conv.id : conv.peerId);
    if (conv.kind === "direct" && conv.peerId !== store.me.user_id) {
      const presence = store.presence.get(conv.peerId);
      const online = Boolean(presence && presence.online);
      avatar.append(h("span", { class: `dot${online ? " online" : ""}`, testid: "presence-dot", "data-online": String(online),
        title: online ? "online" : "offline" }));
    }
    // The open conversation says who is typing under its messages: one indicator, not one per pane.
    const typers = active ? [] : store.typers(conv.id);
    let preview;
    if (typers.length) {
      preview = h("span", { class: "conv-preview typing", testid: "conv-preview",
        text: conv.kind === "group" ? typingText(store, typers) : "typing…" });
    } else {
      const last = conv.lastMessage;
      let text = "No messages yet";
      if (last) {
        text = describe(store, last, { preview: true });
        if (last.sender === store.me.user_id && !last.body?.system) text = `You: ${text}`;
        else if (conv.kind === "group" && !last.body?.system) text = `${store.nameOf(last.sender)}: ${text}`;
      }
      const draft = active ? "" : marksOf(conv).draft;
      preview = draft
        ? h("span", { class: "conv-preview draft", testid: "conv-preview", text: `Draft: ${draft.split("\n")[0]}` })
        : h("span", { class: "conv-preview", testid: "conv-preview", text });
    }
    const marks = marksOf(conv);
    // The open conversation, on screen, is being read right now: no badge flashing in and out.
    const unread = active && this.chatVisible() && document.visibilityState === "visible" ? 0 : store.unread(conv);
    const item = h("li", {
      class: `conv${active ? " active" : ""}${unread ? " has-unread" : ""}`,
      testid: "conversation-item",
      "data-conversation-id": conv.id,
      "data-name": name,
      role: "button",
      tabindex: "0",
      "aria-current": active ? "true" : undefined,
      "data-top": marks.top ? "true" : undefined,
      "data-archived": marks.archived ? "true" : undefined,
      "data-muted": marks.muted ? "true" : undefined,
      "data-marked-unread": marks.unread ? "true" : undefined,
    },
    avatar,
    h("div", { class: "conv-main" },
      h("div", { class: "conv-top" },
        h("span", { class: "conv-name", testid: "conv-name", text: name }),
        marks.muted ? h("span", { class: "conv-mark", testid: "muted-mark", title: "Muted", text: "🔕" }) : null,
        marks.top ? h("span", { class: "conv-mark", testid: "top-mark", title: "Pinned to the top", text: "📌" }) : null,
        h("time", { class: "conv-time", text: conv.lastSeq ? listTime(conv.lastTs) : "" })),
      h("div", { class: "conv-bottom" },
        preview,
        unread && conv.unreadMentions ? h("span", { class: "badge mention-badge", testid: "mention-badge", text: "@" }) : null,
        unread ? h("span", { class: "badge", testid: "unread-badge", text: unread > 99 ? "99+" : String(unread) })
          : marks.unread ? h("span", { class: "badge", testid: "unread-mark", title: "Marked unread", text: "•" }) : null)));
    item.addEventListener("click", () => this.handlers.onOpen(conv.id));
    item.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        this.handlers.onOpen(conv.id);
      }
    });
    return item;
  }

  // ---------------------------------------------------------------------------------------------- chat

  renderChat(store, conv) {
    const open = Boolean(conv);
    $("chat-placeholder").hidden = open;
    $("chat-header").hidden = !open;
    $("timeline").hidden = !open;
    const closed = open && conv.kind === "group" && (conv.left || conv.dissolved);
    $("composer").hidden = !open || closed;
    $("composer-note").hidden = !closed;
    if (closed) {
      $("composer-note").textContent = conv.left ? "You are no longer a member of this group." : "This group was dissolved.";
    }
    if (!open) {
      $("typing").hidden = true;
      this.renderedConvId = null;
      this.nodes.clear();
      $("messages").replaceChildren();
      return;
    }
    this._renderHeader(store, conv);
    this._renderTimeline(store, conv);
  }

  _renderHeader(store, conv) {
    const name = store.displayName(conv);
    $("chat-title").textContent = name;
    $("chat").dataset.conversationId = conv.id;
    paintAvatar($("chat-avatar"), name, conv.kind === "group" ? conv.id : conv.peerId);
    $("chat-avatar").classList.toggle("group", conv.kind === "group");
    // Only owners and admins may add members (docs/protocol.md 12.1): nobody else is offered a button that fails.
    $("add-member").hidden = !store.mayAddMembers(conv);
    const typers = store.typers(conv.id);
    const status = $("chat-status");
    status.classList.remove("online");
    if (conv.kind === "group") {
      status.textContent = conv.memberCount ? `${conv.memberCount} members` : "Group";
    } else if (conv.peerId === store.me.user_id) {
      status.textContent = "Notes to yourself";
    } else {
      const presence = store.presence.get(conv.peerId);
      if (presence && presence.online) {
        status.textContent = "online";
        status.classList.add("online");
      } else {
        status.textContent = presence ? lastSeenText(presence.last_seen) : "";
      }
    }
    const typing = $("typing");
    typing.hidden = typers.length === 0;
    typing.textContent = typers.length ? typingText(store, typers) : "";
  }

  _renderTimeline(store, conv) {
    const timeline = $("timeline");
    const messagesEl = $("messages");
    const switched = this.renderedConvId !== conv.id;
    if (switched) {
      this.nodes.clear();
      messagesEl.replaceChildren();
    }
    const distanceFromBottom = timeline.scrollHeight - timeline.scrollTop - timeline.clientHeight;
    // The first message on screen anchors the view when older messages go in above it.
    const anchor = switched ? null : messagesEl.querySelector("[data-seq]");
    const anchorTop = anchor ? anchor.getBoundingClientRect().top : 0;
    const oldestBefore = anchor ? Number(anchor.dataset.seq) : 0;

    const me = store.me.user_id;
    // Thread messages are shown in the thread pane (reactions.js), under a link on their root.
    const shown = store.timeline(conv).filter((m) => !isEvent(m.body) && !inThread(m.body));
    const pending = [...conv.pending.values()].filter((item) => !inThread(item.body)).sort((a, b) => a.ts - b.ts);
    let lastMine = null;
    for (const m of shown) if (m.sender === me && !m.body.system) lastMine = `m:${m.seq}`;
    if (pending.length) lastMine = `p:${pending[pending.length - 1].client_msg_id}`;

    const wanted = [];
    const used = new Set();
    let previous = null;
    const add = (key, sig, build) => {
      used.add(key);
      const cached = this.nodes.get(key);
      if (cached && cached.sig === sig) {
        wanted.push(cached.node);
        return;
      }
      const node = build();
      this.nodes.set(key, { sig, node });
      wanted.push(node);
    };
    const dayBreak = (ts) => {
      if (previous && sameDay(new Date(previous.ts), new Date(ts))) return;
      const label = dayLabel(ts);
      add(`d:${new Date(ts).toDateString()}`, label, () => h("div", { class: "day", text: label }));
    };

    for (const m of shown) {
      dayBreak(m.ts);
      if (m.body.system) {
        const text = describe(store, m);
        add(`m:${m.seq}`, `n|${text}`, () => h("div", { class: "notice", testid: "notice", "data-seq": m.seq }, h("span", { text })));
        previous = { ...m, system: true };
        continue;
      }
      const mine = m.sender === me;
      const status = mine ? store.statusOf(conv, m) : "";
      const showName = conv.kind === "group" && !mine && (!previous || previous.system || previous.sender !== m.sender
        || m.ts - previous.ts > 300000);
      const key = `m:${m.seq}`;
      const text = describe(store, m);
      const canRecall = mine && !m.body.recalled && !m.body.deleted && store.serverNow() - m.ts < RECALL_WINDOW_MS;
      const sig = [text, m.body.edited || 0, m.body.recalled, m.body.deleted, status, showName, key === lastMine, canRecall,
        store.nameOf(m.sender), m.body.forwarded ? store.nameOf(m.body.forwarded.sender) : "", signature(m.body),
        previewSig(m.body)].join("|");
      add(key, sig, () => this._messageNode(store, m, { mine, status, showName, isLastMine: key === lastMine }));
      previous = m;
    }
    for (const item of pending) {
      dayBreak(item.ts);
      const key = `p:${item.client_msg_id}`;
      const status = item.failed ? "failed" : "sending";
      const msg = { seq: 0, sender: me, ts: item.ts, body: item.body, client_msg_id: item.client_msg_id };
      add(key, `${status}|${key === lastMine}|${item.failed || ""}`, () =>
        this._messageNode(store, msg, { mine: true, status, showName: false, isLastMine: key === lastMine, pending: true,
          failed: item.failed }));
      previous = msg;
    }
    for (const key of [...this.nodes.keys()]) if (!used.has(key)) this.nodes.delete(key);

    const current = [...messagesEl.children];
    if (current.length !== wanted.length || current.some((node, i) => node !== wanted[i])) {
      messagesEl.replaceChildren(...wanted);
    }
    const older = $("older");
    older.textContent = conv.historyState === "loading" ? "Loading…"
      : conv.historyState === "complete" && shown.length ? "Beginning of the conversation" : "";
    older.dataset.state = conv.historyState;

    if (switched || this.stickToBottom) {
      timeline.scrollTop = timeline.scrollHeight;
    } else if (anchor && anchor.isConnected && shown.length && shown[0].seq < oldestBefore) {
      // Older messages went in above: keep what the reader was looking at in place.
      timeline.scrollTop += anchor.getBoundingClientRect().top - anchorTop;
    } else if (distanceFromBottom < 80) {
      timeline.scrollTop = timeline.scrollHeight;
    }
    this.stickToBottom = false;
    this.renderedConvId = conv.id;
    // A first page shorter than the screen: fetch older ones until it scrolls (or the beginning is reached).
    if (timeline.scrollHeight <= timeline.clientHeight + 10) this.handlers.onNearTop();
  }

  _messageNode(store, msg, { mine, status, showName, isLastMine, pending = false, failed = "" }) {
    const body = msg.body || {};
    const gone = Boolean(body.recalled || body.deleted);
    const node = h("div", {
      class: `msg ${mine ? "mine" : "theirs"}${pending ? " pending" : ""}`,
      testid: "message",
      "data-seq": pending ? undefined : msg.seq,
      "data-client-msg-id": msg.client_msg_id,
      "data-mine": String(mine),
      "data-status": status || undefined,
    });
    if (showName) node.append(h("div", { class: "sender", text: store.nameOf(msg.sender, { you: false }) }));
    const origin = body.forwarded;
    if (origin && typeof origin.sender === "number" && !gone) { // protocol 29.1: the first author, by the server
      node.append(h("div", { class: "forwarded", testid: "forwarded-label",
        text: `Forwarded from ${store.nameOf(origin.sender, { you: false })}` }));
    }
    const meta = h("span", { class: "meta" });
    if (body.edited && !gone) meta.append(h("span", { class: "edited", testid: "message-edited", text: "(edited)" }));
    meta.append(h("time", { datetime: new Date(msg.ts).toISOString(), title: new Date(msg.ts).toLocaleString(), text: clock(msg.ts) }));
    if (mine && !gone) {
      meta.append(h("span", { class: `tick ${status}`, testid: "message-tick", title: STATUS_LABEL[status], text: STATUS_TICK[status] }));
    }
    const text = h("span", { class: "text", testid: gone ? "message-gone" : "message-text", text: describe(store, msg) });
    const bubble = h("div", { class: `bubble${gone ? " gone" : ""}` }, text, meta);
    const attached = gone ? null : attachmentNode(body, this.handlers.token(), {
      onOpenImage: (image) => openViewer(this.handlers.token(), image) });
    if (attached) bubble.prepend(attached);
    const card = gone || pending ? null
      : previewNode(body, { onRemove: mine ? () => this.handlers.onRemovePreview(msg.seq) : null });
    if (card) bubble.insertBefore(card, meta);
    const row = h("div", { class: "row" }, bubble);
    if (!pending && !gone) {
      row.append(h("button", { class: "menu-button", type: "button", testid: "message-menu", "data-menu-seq": msg.seq,
        "aria-label": "Message actions", title: "More", text: "⋯" }));
    }
    node.append(row);
    decorate(h, store, msg, { node, bubble, text }, this.handlers); // quote, mentions, thread link, reactions
    if (isLastMine) {
      node.append(h("div", { class: `receipt-label ${status}`, testid: "receipt-label", title: failed || undefined,
        text: STATUS_LABEL[status] }));
    }
    return node;
  }

  // ---------------------------------------------------------------------------------------------- popups

  _openMenu(anchor, seq) {
    if (this.closeMenu) this.closeMenu();
    const items = this.handlers.menuFor(seq);
    if (!items.length) return;
    const menu = h("div", { class: "menu", role: "menu", testid: "message-actions" });
    for (const item of items) {
      menu.append(h("button", { type: "button", role: "menuitem", class: item.danger ? "danger" : "", testid: `menu-${item.id}`,
        text: item.label, onclick: () => { close(); item.run(); } }));
    }
    const root = $("overlay-root");
    root.append(menu);
    const box = anchor.getBoundingClientRect();
    const width = menu.offsetWidth;
    const height = menu.offsetHeight;
    const left = Math.max(8, Math.min(window.innerWidth - width - 8, box.right - width));
    const top = box.bottom + height + 8 > window.innerHeight ? box.top - height - 4 : box.bottom + 4;
    menu.style.left = `${left}px`;
    menu.style.top = `${Math.max(8, top)}px`;
    const outside = (event) => { if (!menu.contains(event.target)) close(); };
    const escape = (event) => { if (event.key === "Escape") close(); };
    const close = () => {
      menu.remove();
      document.removeEventListener("pointerdown", outside, true);
      document.removeEventListener("keydown", escape, true);
      if (this.closeMenu === close) this.closeMenu = null;
    };
    document.addEventListener("pointerdown", outside, true);
    document.addEventListener("keydown", escape, true);
    this.closeMenu = close;
    menu.querySelector("button").focus();
  }

  /**
   * A small modal form. `onSubmit(values)` may be async; a thrown error is shown in the form, which stays open.
   * fields: [{name, label, placeholder, value, multiline}]
   */
  form({ title, description = "", fields = [], submit = "OK", danger = false, onSubmit }) {
    if (this.closeMenu) this.closeMenu();
    const error = h("p", { class: "form-error", testid: "modal-error", role: "alert", hidden: true });
    const inputs = fields.map((field) => {
      const input = h(field.multiline ? "textarea" : "input", {
        name: field.name, placeholder: field.placeholder || "", testid: `modal-field-${field.name}`,
        autocomplete: "off", autocapitalize: "none", spellcheck: "false", rows: field.multiline ? "3" : undefined,
      });
      input.value = field.value || "";
      return h("label", {}, field.label, input);
    });
    const submitButton = h("button", { type: "submit", class: danger ? "danger" : "primary", testid: "modal-submit", text: submit });
    const cancel = h("button", { type: "button", class: "secondary", testid: "modal-cancel", text: "Cancel" });
    const form = h("form", { class: "modal", testid: "modal", role: "dialog", "aria-modal": "true", "aria-label": title, novalidate: true },
      h("h3", { testid: "modal-title", text: title }),
      description ? h("p", { class: "modal-description", text: description }) : null,
      ...inputs,
      error,
      h("div", { class: "modal-actions" }, cancel, submitButton));
    const backdrop = h("div", { class: "backdrop" }, form);
    const close = () => {
      backdrop.remove();
      document.removeEventListener("keydown", escape, true);
    };
    const escape = (event) => { if (event.key === "Escape") close(); };
    cancel.addEventListener("click", close);
    backdrop.addEventListener("pointerdown", (event) => { if (event.target === backdrop) close(); });
    document.addEventListener("keydown", escape, true);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const values = {};
      for (const field of fields) values[field.name] = form.elements[field.name].value;
      submitButton.disabled = true;
      error.hidden = true;
      try {
        await onSubmit(values);
        close();
      } catch (exc) {
        error.textContent = exc && exc.message ? exc.message : String(exc);
        error.hidden = false;
        submitButton.disabled = false;
      }
    });
    $("overlay-root").append(backdrop);
    const first = form.querySelector("input, textarea");
    if (first) {
      first.focus();
      first.select?.();
    } else {
      submitButton.focus();
    }
  }
}
