// Link previews (docs/protocol.md section 30): the card under a message with a link, and the preview events that
// attach or remove it. The card's image is a data: URI the server made (the page's CSP loads no other origin's
// images, and a reader's browser never asks the linked site for anything until the link is clicked).
// No imports: model.js and ui.js both use this file.

const SAFE_IMAGE = /^data:image\/(jpeg|webp|png|gif);base64,[A-Za-z0-9+/=]+$/;
const WEB_LINK = /^https?:\/\//i;

/** A preview event ({seq, ...card} or {seq, removed}) seen in conversation `conv`: remember it for its target. */
export function applyPreviewEvent(conv, event) {
  if (!event || typeof event.seq !== "number" || event.recalled) return;
  const { seq, ...card } = event;
  if (!conv.previewPatches) conv.previewPatches = new Map();
  const known = conv.previewPatches.get(seq);
  if (known && known.removed) return; // a removal is final
  conv.previewPatches.set(seq, card.removed ? { removed: true } : card);
  const target = conv.messages.get(seq);
  if (target) withPreview(conv, target);
}

/** Give a message the preview an event of its conversation attached (when the event came before it did). */
export function withPreview(conv, msg) {
  const card = conv.previewPatches && conv.previewPatches.get(msg.seq);
  const body = msg.body || {};
  if (!card || body.recalled || body.deleted || typeof body.text !== "string") return;
  if (body.link_preview && body.link_preview.removed) return;
  msg.body = { ...body, link_preview: card };
}

/** What of a body's preview the timeline's cache must notice. */
export function previewSig(body) {
  const card = body && body.link_preview;
  if (!card) return "";
  return card.removed ? "removed" : `${card.url}|${card.title || ""}|${card.image ? card.image.length : 0}`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The card for a body with a link preview, or null. `onRemove` (the author's): the card gets a remove button. */
export function previewNode(body, { onRemove = null } = {}) {
  const card = body && body.link_preview;
  if (!card || card.removed || typeof card.url !== "string" || !WEB_LINK.test(card.url)) return null;
  const node = el("div", "link-preview");
  node.dataset.testid = "link-preview";
  if (typeof card.image === "string" && SAFE_IMAGE.test(card.image)) {
    const image = el("img", "link-preview-image");
    image.src = card.image;
    image.alt = "";
    image.dataset.testid = "link-preview-image";
    node.append(image);
  }
  const link = el("a", "link-preview-text");
  link.href = card.url;
  link.target = "_blank";
  link.rel = "noopener noreferrer nofollow";
  for (const [key, testid] of [["site_name", "link-preview-site"], ["title", "link-preview-title"],
    ["description", "link-preview-description"]]) {
    if (typeof card[key] !== "string" || !card[key]) continue;
    const part = el("span", `link-preview-${key.replace("_", "-")}`, card[key]);
    part.dataset.testid = testid;
    link.append(part);
  }
  node.append(link);
  if (onRemove) {
    const remove = el("button", "link-preview-remove", "×");
    remove.type = "button";
    remove.title = "Remove the preview";
    remove.setAttribute("aria-label", "Remove the preview");
    remove.dataset.testid = "link-preview-remove";
    remove.addEventListener("click", (event) => { event.stopPropagation(); onRemove(); });
    node.append(remove);
  }
  return node;
}
