// Forwarding, pins, drafts and the list settings (docs/protocol.md section 29): the forward dialog, the pins bar
// and list, the conversation menu (pin to top, archive, mark unread, mute), drafts saved as typing pauses and restored
// on any device, and the `conversation` frame that tells this page what another device of mine changed.
//
// Its controls are made here (no markup in index.html) and styled by forward.css, loaded from here. app.js creates
// one Organize, hands it the HTTP call and the page's state, and calls its hooks (marked "organize: hook").

import { h } from "./ui.js";
import { describe, marksOf } from "./model.js";

const DRAFT_SAVE_MS = 1500; // a draft is saved once typing pauses this long (conversations.drafts_per_user)
const MUTE_HOURS = 8;

const $ = (id) => document.getElementById(id);

/** Whether a conversation exists on the server (a new 1:1 exists once its first message is). */
const onServer = (conv) => conv.known || conv.lastSeq > 0;

export class Organize {
  /**
   * @param {{api: (path: string, options?: object) => Promise<any>, store: () => any, active: () => string | null,
   *   rerender: () => void, toast: (text: string) => void, newId: () => string}} deps
   */
  constructor(deps) {
    this.deps = deps;
    this.pins = new Map(); // conversation id -> [{message, pinned_by, ts}] as GET .../pins answered
    this.saved = new Map(); // conversation id -> the draft text this page last saved (or restored)
    this.draftTimer = null;
    this.draftFor = null; // the conversation the composer's text belongs to
    document.head.append(h("link", { rel: "stylesheet", href: "/static/forward.css" }));
    this.bar = h("button", { type: "button", class: "pins-bar", testid: "pins-bar", hidden: true,
      onclick: () => this.showPins() });
    const timeline = $("timeline");
    timeline.parentNode.insertBefore(this.bar, timeline);
    this.menuButton = h("button", { type: "button", class: "icon-button conv-menu-button", testid: "conversation-menu",
      "aria-label": "Conversation settings", title: "Conversation settings", text: "⋯", hidden: true,
      onclick: () => this.conversationMenu() });
    $("chat-header").append(this.menuButton);
    $("composer-input").addEventListener("input", () => this._draftSoon());
  }

  // ---------------------------------------------------------------------------------------------- hooks

  /** The open conversation changed (null: none): save the draft of the one left, restore the new one's. */
  opened(conv) {
    this._flushDraft();
    this.menuButton.hidden = !conv;
    this.draftFor = conv ? conv.id : null;
    const input = $("composer-input");
    input.value = conv ? marksOf(conv).draft : "";
    $("send").disabled = input.value.trim() === "";
    if (conv) {
      this.saved.set(conv.id, input.value);
      if (onServer(conv)) this.loadPins(conv);
      else this.pins.set(conv.id, []);
      if (marksOf(conv).unread) this.change(conv, { marked_unread: false }); // opened: read, as far as I am concerned
    }
    this._paintBar(conv);
  }

  /** A message of mine was sent from the composer: its conversation's draft is gone. */
  sent(conversationId) {
    clearTimeout(this.draftTimer);
    if (this.saved.get(conversationId)) this._saveDraft(conversationId, "");
  }

  /** Every timeline message: a pin notice of the open conversation reloads its pins. */
  onMessage(msg) {
    const event = msg.body && msg.body.system && msg.body.system.event;
    if (event !== "pinned" && event !== "unpinned") return;
    const conv = this.deps.store()?.conversations.get(msg.conversation_id);
    if (conv && msg.conversation_id === this.deps.active()) this.loadPins(conv);
    else this.pins.delete(msg.conversation_id);
  }

  /** The `conversation` frame (29.4): my state of a conversation, changed on some device of mine. */
  onState(frame) {
    const store = this.deps.store();
    if (!store) return;
    const conv = store.conversation(frame.conversation_id);
    const before = marksOf(conv).draft;
    conv.settings = {
      draft: frame.draft || "", draft_ts: frame.draft_ts || 0, pinned_at: frame.pinned_at || 0,
      archived: Boolean(frame.archived), marked_unread: Boolean(frame.marked_unread),
      muted_until: typeof frame.muted_until === "number" ? frame.muted_until : null, level: frame.level || "all",
    };
    // The open conversation's box takes a draft typed elsewhere unless I have typed something else here since.
    const input = $("composer-input");
    if (conv.id === this.draftFor && (input.value === before || input.value === this.saved.get(conv.id))) {
      input.value = conv.settings.draft;
      this.saved.set(conv.id, input.value);
      $("send").disabled = input.value.trim() === "";
    }
    store.touch(conv.id);
    this.deps.rerender();
  }

  /** Items for a message's menu: forward (what can be), pin or unpin (where I may). */
  menuItems(conv, msg) {
    const body = msg.body || {};
    const content = ["text", "file", "image", "voice", "custom"].some((k) => k in body);
    if (!content || body.recalled || body.deleted || body.call) return [];
    const items = [{ id: "forward", label: "Forward…", run: () => this.forwardDialog(conv, [msg.seq]) }];
    if (this.mayPin(conv)) {
      const pinned = (this.pins.get(conv.id) || []).some((p) => p.message.seq === msg.seq);
      items.push(pinned
        ? { id: "unpin", label: "Unpin", run: () => this.pin(conv, msg.seq, false) }
        : { id: "pin", label: "Pin", run: () => this.pin(conv, msg.seq, true) });
    }
    return items;
  }

  mayPin(conv) {
    if (conv.kind !== "group") return true;
    return !conv.left && !conv.dissolved && (conv.myRole === "owner" || conv.myRole === "admin");
  }

  // ---------------------------------------------------------------------------------------------- forwarding

  forwardDialog(source, seqs) {
    const store = this.deps.store();
    const targets = store.ordered().filter((c) => !(c.kind === "group" && (c.left || c.dissolved)));
    const boxes = targets.map((c) => {
      const box = h("input", { type: "checkbox", value: c.id });
      return h("label", { class: "forward-target", testid: "forward-target", "data-name": store.displayName(c) },
        box, h("span", { text: store.displayName(c) }));
    });
    const error = h("p", { class: "form-error", testid: "forward-error", role: "alert", hidden: true });
    const submit = h("button", { type: "submit", class: "primary", testid: "forward-submit", text: "Forward" });
    const cancel = h("button", { type: "button", class: "secondary", text: "Cancel", onclick: () => close() });
    const form = h("form", { class: "modal", testid: "forward-dialog", role: "dialog", "aria-modal": "true",
      "aria-label": "Forward to" },
    h("h3", { text: seqs.length > 1 ? `Forward ${seqs.length} messages to` : "Forward to" }),
    h("div", { class: "forward-targets" }, ...boxes),
    error,
    h("div", { class: "modal-actions" }, cancel, submit));
    const backdrop = h("div", { class: "backdrop" }, form);
    const close = () => backdrop.remove();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const chosen = boxes.map((label) => label.querySelector("input")).filter((b) => b.checked)
        .map((b) => store.conversations.get(b.value));
      if (!chosen.length) {
        error.textContent = "Pick at least one conversation.";
        error.hidden = false;
        return;
      }
      submit.disabled = true;
      try {
        const answer = await this.deps.api("/v1/forward", { method: "POST", body: {
          conversation_id: source.id, seqs, client_msg_id: this.deps.newId(),
          to: chosen.filter((c) => c.kind === "direct").map((c) => c.peerId),
          group_ids: chosen.filter((c) => c.kind === "group").map((c) => c.groupId),
        } });
        const failed = answer.copies.filter((c) => c.error);
        close();
        this.deps.toast(failed.length
          ? `Forwarded ${answer.copies.length - failed.length} of ${answer.copies.length}: ${failed[0].error.message}`
          : `Forwarded to ${chosen.length} ${chosen.length > 1 ? "conversations" : "conversation"}`);
      } catch (exc) {
        error.textContent = exc.message || String(exc);
        error.hidden = false;
        submit.disabled = false;
      }
    });
    $("overlay-root").append(backdrop);
  }

  // ---------------------------------------------------------------------------------------------- pins

  async loadPins(conv) {
    try {
      const data = await this.deps.api(`/v1/conversations/${encodeURIComponent(conv.id)}/pins`);
      this.pins.set(conv.id, data.pins);
    } catch {
      this.pins.set(conv.id, []); // a conversation not on the server yet (a new 1:1) has none
    }
    if (conv.id === this.deps.active()) this._paintBar(conv);
  }

  async pin(conv, seq, pinned) {
    try {
      await this.deps.api(`/v1/conversations/${encodeURIComponent(conv.id)}/pins/${seq}`,
        { method: pinned ? "PUT" : "DELETE" });
      await this.loadPins(conv);
    } catch (exc) {
      this.deps.toast(`Could not ${pinned ? "pin" : "unpin"}: ${exc.message || exc}`);
    }
  }

  _paintBar(conv) {
    const pins = conv ? this.pins.get(conv.id) || [] : [];
    this.bar.hidden = pins.length === 0;
    if (!pins.length) return;
    const store = this.deps.store();
    const text = describe(store, pins[0].message, { preview: true }).split("\n")[0];
    this.bar.replaceChildren(h("span", { class: "pin-icon", "aria-hidden": "true", text: "📌" }),
      h("span", { class: "pins-text", testid: "pins-bar-text", text }),
      pins.length > 1 ? h("span", { class: "pins-count", text: `+${pins.length - 1}` }) : "");
  }

  showPins() {
    const conv = this.deps.store()?.conversations.get(this.deps.active());
    if (!conv) return;
    const store = this.deps.store();
    const rows = (this.pins.get(conv.id) || []).map((p) => h("li", { class: "pin-item", testid: "pin-item",
      "data-seq": p.message.seq },
    h("span", { class: "pin-who", text: store.nameOf(p.message.sender) }),
    h("span", { class: "pin-text", text: describe(store, p.message, { preview: true }) }),
    this.mayPin(conv) ? h("button", { type: "button", class: "link", testid: "pin-remove", text: "Unpin",
      onclick: async () => { close(); await this.pin(conv, p.message.seq, false); } }) : ""));
    const closeButton = h("button", { type: "button", class: "secondary", text: "Close", onclick: () => close() });
    const box = h("div", { class: "modal", testid: "pins-list", role: "dialog", "aria-label": "Pinned messages" },
      h("h3", { text: "Pinned messages" }), h("ul", { class: "pins" }, ...rows),
      h("div", { class: "modal-actions" }, closeButton));
    const backdrop = h("div", { class: "backdrop", onpointerdown: (e) => { if (e.target === backdrop) close(); } }, box);
    const close = () => backdrop.remove();
    $("overlay-root").append(backdrop);
  }

  // ---------------------------------------------------------------------------------------------- my settings

  conversationMenu() {
    const conv = this.deps.store()?.conversations.get(this.deps.active());
    if (!conv) return;
    const m = marksOf(conv);
    const items = [
      ["toggle-top", m.top ? "Unpin from top" : "Pin to top", { pinned: !m.top }],
      ["toggle-archive", m.archived ? "Unarchive" : "Archive", { archived: !m.archived }],
      ["mark-unread", "Mark as unread", { marked_unread: true }],
      ["toggle-mute", m.muted ? "Unmute" : `Mute for ${MUTE_HOURS} hours`,
        { muted_until: m.muted ? 1 : Date.now() + MUTE_HOURS * 3600000 }],
    ];
    if ((this.pins.get(conv.id) || []).length) {
      items.push(["show-pins", "Pinned messages", null]);
    }
    const menu = h("div", { class: "menu conv-menu", role: "menu", testid: "conversation-actions" });
    const close = () => {
      menu.remove();
      document.removeEventListener("pointerdown", outside, true);
    };
    const outside = (event) => { if (!menu.contains(event.target)) close(); };
    for (const [id, label, change] of items) {
      menu.append(h("button", { type: "button", role: "menuitem", testid: `conv-${id}`, text: label,
        onclick: () => { close(); if (change) this.change(conv, change); else this.showPins(); } }));
    }
    $("overlay-root").append(menu);
    const box = this.menuButton.getBoundingClientRect();
    menu.style.left = `${Math.max(8, box.right - menu.offsetWidth)}px`;
    menu.style.top = `${box.bottom + 4}px`;
    document.addEventListener("pointerdown", outside, true);
    menu.querySelector("button").focus();
  }

  async change(conv, settings) {
    try {
      const state = await this.deps.api(`/v1/conversations/${encodeURIComponent(conv.id)}/settings`,
        { method: "PATCH", body: settings });
      this.onState({ ...state, t: "conversation" });
    } catch (exc) {
      this.deps.toast(`Could not change the conversation: ${exc.message || exc}`);
    }
  }

  // ---------------------------------------------------------------------------------------------- drafts

  _draftSoon() {
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => this._flushDraft(), DRAFT_SAVE_MS);
  }

  _flushDraft() {
    clearTimeout(this.draftTimer);
    const id = this.draftFor;
    const conv = id ? this.deps.store()?.conversations.get(id) : null;
    if (!conv || !onServer(conv)) return; // a 1:1 with no message yet does not exist on the server: nothing to keep
    const text = $("composer-input").value;
    if (text.trim() === "" ? !this.saved.get(id) : this.saved.get(id) === text) return;
    this._saveDraft(id, text.trim() === "" ? "" : text);
  }

  async _saveDraft(id, text) {
    this.saved.set(id, text);
    const path = `/v1/conversations/${encodeURIComponent(id)}/draft`;
    try {
      const state = await this.deps.api(path, text ? { method: "PUT", body: { text } } : { method: "DELETE" });
      const conv = this.deps.store()?.conversations.get(id);
      if (conv) {
        conv.settings = { ...(conv.settings || {}), ...state };
        this.deps.store().touch(id);
      }
    } catch {
      this.saved.delete(id); // not saved (a 1:1 not on the server yet, the rate): tried again at the next pause
    }
  }
}
