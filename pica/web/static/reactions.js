// Reactions, replies, threads and mentions in the chat page (docs/protocol.md section 28): what the store learns
// from them, how a message shows them (reactions bar, quote, thread link, highlighted mentions), and the page's
// parts for them (reply bar, mention suggestions, thread pane). Loaded by app.js; its style is reactions.css.

export const QUICK_EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "🙏"];
const SUGGESTIONS = 6; // names shown under the message box at a time
const THREAD_PAGES = 20; // pages of a thread read when its pane opens (the server's page size each)

// ------------------------------------------------------------------------------------------------ state

/** Events that change another message and are not shown as bubbles (the target shows the change). */
export function isReaction(body) {
  return Boolean(body && body.reaction);
}

/** A message of a thread: shown in the thread pane, not in the conversation's timeline. */
export function inThread(body) {
  return Boolean(body && body.thread && typeof body.thread.root === "number");
}

/** `body.reactions` with `user` added to (or taken from) `emoji`: a set, so applying an event twice changes nothing. */
export function withReaction(body, user, emoji, add) {
  const reactions = {};
  for (const [key, ids] of Object.entries(body.reactions || {})) if (Array.isArray(ids)) reactions[key] = [...ids];
  const holders = (reactions[emoji] || []).filter((id) => id !== user);
  if (add) holders.push(user);
  if (holders.length) reactions[emoji] = holders;
  else delete reactions[emoji];
  const next = { ...body };
  if (Object.keys(reactions).length) next.reactions = reactions;
  else delete next.reactions;
  return next;
}

export function mentionsMe(body, me) {
  return Boolean(body) && (body.mention_all === true || (Array.isArray(body.mentions) && body.mentions.includes(me)));
}

/**
 * A message handed over in order (store.ingest), once: a reaction changes its target, a thread message counts under
 * its root (by seq, so a root read from the server after it is not counted twice), a mention of me counts as unread.
 */
export function applyInOrder(store, conv, msg) {
  const body = msg.body || {};
  if (body.reaction) {
    const target = conv.messages.get(body.reaction.seq);
    if (target && !target.body.recalled && !target.body.deleted) {
      target.body = withReaction(target.body, msg.sender, body.reaction.emoji, body.reaction.add);
    }
  }
  if (inThread(body)) {
    const root = conv.messages.get(body.thread.root);
    const info = root?.body.thread_info || { count: 0, last_seq: 0 };
    if (root && !root.body.recalled && msg.seq > info.last_seq) {
      root.body = { ...root.body, thread_info: { count: info.count + 1, last_seq: msg.seq, last_ts: msg.ts } };
    }
  }
  if (msg.sender !== store.me.user_id && msg.seq > conv.readSeq && mentionsMe(body, store.me.user_id)) {
    conv.unreadMentions = (conv.unreadMentions || 0) + 1;
  }
}

/** What a message's bubble shows of all this, for the timeline's cache of drawn bubbles. */
export function signature(body) {
  return JSON.stringify([body.reactions || null, body.thread_info?.count || 0, body.reply || null]);
}

// ------------------------------------------------------------------------------------------------ drawing a message

/**
 * Add to a drawn message: the quote it replies with, its mentions highlighted, its thread link and reactions bar.
 * `actions`: {onReact(seq, emoji, mine), onOpenThread(seq), onQuote(seq)}.
 */
export function decorate(h, store, msg, parts, actions) {
  const body = msg.body || {};
  const me = store.me.user_id;
  if (body.recalled || body.deleted) return;
  if (body.reply && typeof body.reply === "object") {
    parts.bubble.prepend(quoteNode(h, store, body.reply, () => actions.onQuote(body.reply.seq)));
  }
  if ((Array.isArray(body.mentions) || body.mention_all) && typeof body.text === "string" && !body.file && !body.image) {
    parts.text.replaceChildren(...highlighted(h, store, body));
  }
  if (mentionsMe(body, me) && msg.sender !== me) parts.node.classList.add("mentions-me");
  const extras = h("div", { class: "msg-extras" });
  const reactions = Object.entries(body.reactions || {}).filter(([, ids]) => Array.isArray(ids) && ids.length);
  if (reactions.length && msg.seq) {
    const bar = h("div", { class: "reactions", testid: "reactions" });
    for (const [emoji, ids] of reactions) {
      const mine = ids.includes(me);
      bar.append(h("button", {
        type: "button", class: `reaction${mine ? " mine" : ""}`, testid: "reaction", "data-emoji": emoji,
        "data-count": String(ids.length), "aria-pressed": String(mine),
        title: ids.map((id) => store.nameOf(id)).join(", "), text: `${emoji} ${ids.length}`,
        onclick: () => actions.onReact(msg.seq, emoji, mine),
      }));
    }
    extras.append(bar);
  }
  const count = body.thread_info?.count || 0;
  if (count && msg.seq) {
    extras.append(h("button", { type: "button", class: "thread-link", testid: "thread-link",
      text: count === 1 ? "1 reply in thread" : `${count} replies in thread`, onclick: () => actions.onOpenThread(msg.seq) }));
  }
  if (extras.childElementCount) parts.node.append(extras);
}

function quoteNode(h, store, quote, onClick) {
  const who = typeof quote.sender === "number" ? store.nameOf(quote.sender) : "";
  let said = quote.recalled ? "message recalled" : quote.text;
  if (said === undefined) said = quote.kind && quote.kind !== "text" ? `[${quote.kind}]` : "…";
  return h("button", { type: "button", class: `quote${quote.recalled ? " gone" : ""}`, testid: "reply-quote",
    "data-quote-seq": String(quote.seq), onclick: onClick },
  h("span", { class: "quote-who", text: who }),
  h("span", { class: "quote-text", testid: "reply-quote-text", text: said }));
}

/** The text with each `@name` of a mentioned user (and `@all`) in a highlighted span; the rest stays text. */
function highlighted(h, store, body) {
  const names = new Map();
  for (const id of body.mentions || []) names.set(store.nameOf(id, { you: false }).toLowerCase(), id);
  const out = [];
  let rest = body.text;
  const pattern = /@([\p{L}\p{N}_.-]+)/u;
  for (let match = pattern.exec(rest); match; match = pattern.exec(rest)) {
    const word = match[1].toLowerCase();
    const known = names.has(word) || (word === "all" && body.mention_all === true);
    if (match.index) out.push(document.createTextNode(rest.slice(0, match.index)));
    out.push(known ? h("span", { class: "mention", testid: "mention", text: match[0] }) : document.createTextNode(match[0]));
    rest = rest.slice(match.index + match[0].length);
  }
  if (rest) out.push(document.createTextNode(rest));
  return out;
}

// ------------------------------------------------------------------------------------------------ the page's parts

export class Extras {
  /**
   * env: {h, store(), client() (the SDK's PicaClient), call(path, options), send(body), toast(text), rerender(), composer (textarea),
   * composerForm}
   */
  constructor(env) {
    this.env = env;
    this.replyTo = null; // {conversationId, seq}
    this.members = new Map(); // conversation id -> [{user_id, username, role}]
    this.picked = new Map(); // "@name" -> user id, chosen from the suggestions for the message being written
    this.thread = null; // {conversationId, root, node}
    this.suggestion = null; // {box, input, start, options, index}
    document.head.append(env.h("link", { rel: "stylesheet", href: "/static/reactions.css" }));
    this._replyBar = env.h("div", { class: "reply-bar", testid: "reply-bar", hidden: true });
    env.composerForm.before(this._replyBar);
    this.attachSuggestions(env.composer);
  }

  // ---------------------------------------------------------------------------------------------- sending

  /** The body of a message written in the message box (or the thread pane): reply, mentions, @all. */
  compose(conv, text, extra = {}) {
    const body = { text, ...extra };
    if (this.replyTo && this.replyTo.conversationId === conv.id && !extra.thread) {
      body.reply = { seq: this.replyTo.seq };
      this.cancelReply();
    }
    const ids = new Set();
    for (const [word, id] of this.picked) if (text.includes(word)) ids.add(id);
    for (const member of this.members.get(conv.id) || []) {
      if (new RegExp(`@${escape(member.username)}(?![\\p{L}\\p{N}_.-])`, "u").test(text)) ids.add(member.user_id);
    }
    if (conv.kind === "direct" && conv.peerId !== this.env.store().me.user_id) {
      const peer = this.env.store().nameOf(conv.peerId, { you: false });
      if (new RegExp(`@${escape(peer)}(?![\\p{L}\\p{N}_.-])`, "u").test(text)) ids.add(conv.peerId);
    }
    ids.delete(this.env.store().me.user_id);
    if (ids.size) body.mentions = [...ids];
    if (conv.kind === "group" && /(^|\s)@all(?![\p{L}\p{N}_.-])/u.test(text)) body.mention_all = true;
    this.picked.clear();
    return body;
  }

  react(conv, seq, emoji, remove) {
    return this.env.client().react(conv.id, seq, emoji, remove); // the SDK's outbox: re-sent until acked
  }

  // ---------------------------------------------------------------------------------------------- reply bar

  startReply(conv, msg) {
    this.replyTo = { conversationId: conv.id, seq: msg.seq };
    const { h } = this.env;
    const text = typeof msg.body.text === "string" ? msg.body.text : "attachment";
    this._replyBar.replaceChildren(
      h("span", { class: "reply-label", text: `Replying to ${this.env.store().nameOf(msg.sender)}` }),
      h("span", { class: "reply-text", testid: "reply-bar-text", text }),
      h("button", { type: "button", class: "icon-button", testid: "reply-cancel", "aria-label": "Cancel the reply",
        text: "×", onclick: () => this.cancelReply() }));
    this._replyBar.hidden = false;
    this.env.composer.focus();
  }

  cancelReply() {
    this.replyTo = null;
    this._replyBar.hidden = true;
  }

  /** Another conversation was opened: a reply started elsewhere is not carried over. */
  switched(conversationId) {
    if (this.replyTo && this.replyTo.conversationId !== conversationId) this.cancelReply();
    if (this.thread && this.thread.conversationId !== conversationId) this.closeThread();
    this.hideSuggestions();
  }

  // ---------------------------------------------------------------------------------------------- mentions

  async membersOf(conv) {
    if (conv.kind !== "group") {
      const store = this.env.store();
      return conv.peerId && conv.peerId !== store.me.user_id
        ? [{ user_id: conv.peerId, username: store.nameOf(conv.peerId, { you: false }) }] : [];
    }
    if (!this.members.has(conv.id)) {
      const data = await this.env.call(`/v1/groups/${conv.groupId}/members`);
      this.members.set(conv.id, data.members);
    }
    return this.members.get(conv.id);
  }

  /** Typing `@` and a few letters offers the conversation's members (and @all in a group) under the box. */
  attachSuggestions(input) {
    input.addEventListener("input", () => this._suggest(input));
    input.addEventListener("keydown", (event) => {
      const open = this.suggestion && this.suggestion.input === input;
      if (!open) return;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const { options } = this.suggestion;
        this.suggestion.index = (this.suggestion.index + (event.key === "ArrowDown" ? 1 : options.length - 1)) % options.length;
        this._drawSuggestions();
      } else if (event.key === "Enter" || event.key === "Tab") {
        event.preventDefault();
        event.stopImmediatePropagation(); // the message is not sent: the name is put in
        this._choose(this.suggestion.options[this.suggestion.index]);
      } else if (event.key === "Escape") {
        this.hideSuggestions();
      }
    }, true);
    // Hidden a moment after the box loses focus (a click on an option lands first), unless the focus came back
    // meanwhile; back in the box, the suggestions are worked out again from the text before the caret. Only this
    // box's own: the thread pane's box, closed just before, must not hide the suggestions the main box opened since.
    input.addEventListener("blur", () => setTimeout(() => {
      if (document.activeElement !== input && this.suggestion && this.suggestion.input === input) this.hideSuggestions();
    }, 150));
    input.addEventListener("focus", () => this._suggest(input));
  }

  async _suggest(input) {
    const store = this.env.store();
    const conv = store && this.env.activeConversation();
    const before = input.value.slice(0, input.selectionStart);
    const match = /(^|\s)@([\p{L}\p{N}_.-]*)$/u.exec(before);
    if (!conv || !match) {
      this.hideSuggestions();
      return;
    }
    const typed = match[2].toLowerCase();
    let members;
    try {
      members = await this.membersOf(conv);
    } catch {
      return;
    }
    const options = members.filter((m) => m.user_id !== store.me.user_id && m.username.toLowerCase().startsWith(typed))
      .slice(0, SUGGESTIONS).map((m) => ({ id: m.user_id, name: m.username }));
    if (conv.kind === "group" && "all".startsWith(typed)) options.push({ id: 0, name: "all" });
    if (!options.length) {
      this.hideSuggestions();
      return;
    }
    if (!this.suggestion || this.suggestion.input !== input) {
      this.hideSuggestions();
      const box = this.env.h("ul", { class: "mention-suggestions", testid: "mention-suggestions", role: "listbox" });
      input.closest("form").before(box);
      this.suggestion = { box, input, options, index: 0 };
    }
    Object.assign(this.suggestion, { options, index: 0, start: before.length - match[2].length - 1 });
    this._drawSuggestions();
  }

  _drawSuggestions() {
    const { box, options, index } = this.suggestion;
    box.replaceChildren(...options.map((option, i) => this.env.h("li", {
      class: `mention-option${i === index ? " chosen" : ""}`, testid: "mention-option", role: "option",
      "aria-selected": String(i === index), "data-user-id": String(option.id),
      text: option.id ? `@${option.name}` : "@all (everyone here)",
      onmousedown: (event) => { event.preventDefault(); this._choose(option); },
    })));
  }

  _choose(option) {
    const { input, start } = this.suggestion;
    const word = `@${option.name}`;
    const end = input.selectionStart;
    input.value = `${input.value.slice(0, start)}${word} ${input.value.slice(end)}`;
    const caret = start + word.length + 1;
    input.setSelectionRange(caret, caret);
    if (option.id) this.picked.set(word, option.id);
    this.hideSuggestions();
    input.dispatchEvent(new Event("input"));
    input.focus();
  }

  hideSuggestions() {
    if (!this.suggestion) return;
    this.suggestion.box.remove();
    this.suggestion = null;
  }

  // ---------------------------------------------------------------------------------------------- thread pane

  async openThread(conv, root) {
    this.closeThread();
    const { h } = this.env;
    const input = h("textarea", { class: "thread-input", testid: "thread-input", rows: "1", placeholder: "Reply in thread",
      "aria-label": "Reply in thread", maxlength: "8000" });
    const form = h("form", { class: "thread-composer", testid: "thread-composer" }, input,
      h("button", { type: "submit", class: "primary", testid: "thread-send", text: "Send" }));
    const node = h("aside", { class: "thread-pane", testid: "thread-pane", "aria-label": "Thread" },
      h("header", { class: "thread-header" },
        h("h3", { text: "Thread" }),
        h("button", { type: "button", class: "icon-button", testid: "thread-close", "aria-label": "Close the thread",
          text: "×", onclick: () => this.closeThread() })),
      h("div", { class: "thread-messages", testid: "thread-messages" }),
      form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value;
      if (!text.trim()) return;
      input.value = "";
      this.env.send(this.compose(conv, text, { thread: { root } }));
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    this.attachSuggestions(input);
    document.getElementById("chat").append(node);
    this.thread = { conversationId: conv.id, root, node, readUpTo: 0 };
    this.renderThread();
    input.focus();
    try {
      let after = 0;
      for (let page = 0; page < THREAD_PAGES; page += 1) {
        const got = await this.env.client().threadPage(conv.id, root, after);
        for (const msg of got.msgs) this.env.store().insert(msg);
        if (!got.more || !got.msgs.length) break;
        after = got.msgs[got.msgs.length - 1].seq;
      }
    } catch (exc) {
      this.env.toast(`Could not load the thread: ${exc.message || exc.code}`);
    }
    this.env.rerender();
  }

  closeThread() {
    if (!this.thread) return;
    this.thread.node.remove();
    this.thread = null;
  }

  /** Draw the open thread from the store (the root and every loaded message under it), and mark it read. */
  renderThread() {
    const open = this.thread;
    const store = this.env.store();
    if (!open || !store) return;
    const conv = store.conversations.get(open.conversationId);
    if (!conv) return;
    const { h } = this.env;
    const rows = [];
    const root = conv.messages.get(open.root);
    const line = (msg, cls) => h("div", { class: `thread-msg ${cls}`, testid: cls === "root" ? "thread-root" : "thread-message",
      "data-seq": String(msg.seq || "") },
    h("span", { class: "sender", text: store.nameOf(msg.sender) }),
    h("span", { class: "text", testid: "thread-text", text: msg.body.recalled ? "message recalled" : String(msg.body.text ?? "") }));
    if (root) rows.push(line(root, "root"));
    const replies = [...conv.messages.values()].filter((m) => m.body.thread?.root === open.root).sort((a, b) => a.seq - b.seq);
    for (const msg of replies) rows.push(line(msg, "reply"));
    for (const item of conv.pending.values()) if (item.body.thread?.root === open.root) rows.push(line({ ...item, sender: store.me.user_id, seq: 0 }, "reply pending"));
    open.node.querySelector(".thread-messages").replaceChildren(...rows);
    const last = replies.length ? replies[replies.length - 1].seq : 0;
    if (last > open.readUpTo) {
      open.readUpTo = last;
      this.env.call(`/v1/conversations/${encodeURIComponent(conv.id)}/threads/${open.root}/read`,
        { method: "POST", body: { seq: last } }).catch(() => {}); // not a participant yet: nothing to mark
    }
  }
}

function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

