// The search box: GET /v1/search (docs/protocol.md section 15) over the messages of my conversations, the matches
// highlighted (offsets are Unicode code points: the text is indexed as Array.from(text)), a click opens the
// conversation. The box has its own form in the sidebar; results show above the conversation list.

import { api } from "./pica-client.js";

const DELAY_MS = 300; // one request once typing pauses, not one per key
const LIMIT = 20;

/** The parts of `text` with the spans [start, end) in code points marked: [[piece, marked], ...]. */
export function highlighted(text, spans) {
  const points = Array.from(text);
  const parts = [];
  let at = 0;
  for (const [start, end] of spans || []) {
    if (start < at || end <= start || start >= points.length) continue;
    if (start > at) parts.push([points.slice(at, start).join(""), false]);
    parts.push([points.slice(start, Math.min(end, points.length)).join(""), true]);
    at = Math.min(end, points.length);
  }
  if (at < points.length) parts.push([points.slice(at).join(""), false]);
  return parts;
}

function marked(text, spans, className) {
  const node = document.createElement("span");
  node.className = className;
  for (const [piece, hit] of highlighted(text, spans)) {
    if (hit) {
      const mark = document.createElement("mark");
      mark.textContent = piece;
      node.append(mark);
    } else {
      node.append(piece);
    }
  }
  return node;
}

export class SearchBox {
  /** `token()`: the access token; `store()`: the page's store (names); `open(id)`: open a conversation. */
  constructor({ token, store, open }) {
    this.token = token;
    this.store = store;
    this.open = open;
    this.form = document.getElementById("search-form");
    this.input = document.getElementById("search");
    this.results = document.getElementById("search-results");
    this.timer = null;
    this.asked = "";
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.run(); });
    this.input.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), DELAY_MS);
    });
    this.input.addEventListener("keydown", (event) => { if (event.key === "Escape") this.clear(); });
  }

  clear() {
    clearTimeout(this.timer);
    this.input.value = "";
    this.asked = "";
    this.results.replaceChildren();
    this.results.hidden = true;
  }

  async run() {
    const query = this.input.value.trim();
    if (!query) { this.clear(); return; }
    this.asked = query;
    let page;
    try {
      const params = new URLSearchParams({ q: query, limit: String(LIMIT) });
      page = await api(`/v1/search?${params}`, { token: this.token() });
    } catch (exc) {
      if (this.asked === query) this.note(exc && exc.message ? exc.message : "Search failed.");
      return;
    }
    if (this.asked !== query) return; // a later search is under way
    this.show(page);
  }

  note(text) {
    const note = document.createElement("p");
    note.className = "search-note";
    note.dataset.testid = "search-note";
    note.textContent = text;
    this.results.replaceChildren(note);
    this.results.hidden = false;
  }

  show(page) {
    const store = this.store();
    if (!page.messages.length) { this.note("No messages found."); return; }
    const items = page.messages.map((msg, i) => {
      const marks = page.highlights[i] || {};
      const body = msg.body || {};
      const item = document.createElement("button");
      item.type = "button";
      item.className = "search-result";
      item.dataset.testid = "search-result";
      item.dataset.conversationId = msg.conversation_id;
      const conv = store ? store.conversations.get(msg.conversation_id) : null;
      const head = document.createElement("span");
      head.className = "search-result-head";
      head.textContent = `${conv ? store.displayName(conv) : msg.conversation_id} · ${store ? store.nameOf(msg.sender) : msg.sender}`;
      item.append(head);
      const file = body.file || body.image;
      if (file && typeof file.name === "string") item.append(marked(file.name, marks.name, "search-result-name"));
      if (typeof body.text === "string") item.append(marked(body.text, marks.text, "search-result-text"));
      item.addEventListener("click", () => { this.clear(); this.open(msg.conversation_id); });
      return item;
    });
    this.results.replaceChildren(...items);
    this.results.hidden = false;
  }
}
