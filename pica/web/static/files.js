// Files in the chat page (docs/protocol.md section 26): uploads with progress, attachments drawn from authenticated
// downloads, and voice notes recorded with MediaRecorder.
//
// Downloads need the bearer token, which an <img src> cannot send: the bytes are fetched, kept as a blob, and shown
// through an object URL (one per file and size, kept for the page's life: a file's bytes never change).

const objectUrls = new Map(); // "fileId/size" -> Promise<string>

/** POST /v1/files through the SDK's client (its token, renewed if expired); onProgress(sent, total) as they go. */
export function uploadFile(client, file, onProgress) {
  return client.upload(file, file.name || "file", onProgress);
}

/** The message body that sends an uploaded file: an image, a voice note, or a file. */
export function bodyFor(info, { caption = "", voice = null } = {}) {
  if (voice) return { voice: { id: info.file_id, duration_ms: voice.durationMs, waveform: voice.waveform } };
  const kind = info.content_type.startsWith("image/") && info.width ? "image" : "file";
  const body = { [kind]: { id: info.file_id } };
  if (caption.trim()) body.text = caption;
  return body;
}

/** An object URL of a file's bytes (or of one of its thumbnails). */
export function fileUrl(token, fileId, size = 0) {
  const key = `${fileId}/${size}`;
  if (!objectUrls.has(key)) {
    const query = size ? `?thumbnail=${size}` : "";
    const loading = fetch(`/v1/files/${encodeURIComponent(fileId)}${query}`, { headers: { Authorization: `Bearer ${token}` } })
      .then((resp) => {
        if (!resp.ok) throw new Error(`download failed (${resp.status})`);
        return resp.blob();
      })
      .then((blob) => URL.createObjectURL(blob));
    loading.catch(() => objectUrls.delete(key)); // a failure is not remembered: the next render tries again
    objectUrls.set(key, loading);
  }
  return objectUrls.get(key);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (name === "text") node.textContent = value;
    else if (name === "testid") node.dataset.testid = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The smallest thumbnail at least `want` pixels on its longest side (or the largest there is). */
function thumbnailFor(image, want) {
  const sizes = [...(image.thumbnails || [])].sort((a, b) => a - b);
  return sizes.find((s) => s >= want) || sizes[sizes.length - 1] || 0;
}

/** What a message shows of its file: an image (a thumbnail, opened full size in a viewer on click), a voice note
 * (a player with its duration), or a file (its name and size, a download link). null for a body without one. */
export function attachmentNode(body, token, { onOpenImage } = {}) {
  if (body.image) {
    const image = body.image;
    const size = thumbnailFor(image, 320);
    const img = el("img", { class: "attachment-image", testid: "attachment-image", alt: image.name || "image",
      width: image.width && image.height ? Math.min(320, image.width) : undefined });
    if (image.width && image.height) img.style.aspectRatio = `${image.width} / ${image.height}`;
    if (size) fileUrl(token, image.id, size).then((url) => { img.src = url; }, () => img.classList.add("broken"));
    else fileUrl(token, image.id).then((url) => { img.src = url; }, () => img.classList.add("broken"));
    img.addEventListener("click", () => onOpenImage && onOpenImage(image));
    return img;
  }
  if (body.voice) {
    const voice = body.voice;
    const audio = el("audio", { controls: "", preload: "none", testid: "attachment-voice" });
    const seconds = Math.round((voice.duration_ms || 0) / 1000);
    const box = el("div", { class: "attachment-voice" }, audio,
      el("span", { class: "duration", text: `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}` }));
    fileUrl(token, voice.id).then((url) => { audio.src = url; }, () => box.classList.add("broken"));
    return box;
  }
  if (body.file) {
    const file = body.file;
    const link = el("a", { class: "attachment-file", testid: "attachment-file", href: "#", text: `📎 ${file.name}` });
    link.addEventListener("click", async (event) => {
      event.preventDefault();
      const url = await fileUrl(token, file.id);
      const save = el("a", { href: url, download: file.name });
      document.body.append(save);
      save.click();
      save.remove();
    });
    return el("div", { class: "attachment" }, link, el("span", { class: "size", text: ` ${sizeText(file.size || 0)}` }));
  }
  return null;
}

/** A full-size image over the page; closed by a click or Escape. */
export function openViewer(token, image) {
  const img = el("img", { class: "viewer-image", testid: "viewer-image", alt: image.name || "image" });
  const overlay = el("div", { class: "viewer", testid: "image-viewer", role: "dialog", "aria-label": image.name || "image" }, img);
  const close = () => { overlay.remove(); document.removeEventListener("keydown", onKey); };
  const onKey = (event) => { if (event.key === "Escape") close(); };
  overlay.addEventListener("click", close);
  document.addEventListener("keydown", onKey);
  document.body.append(overlay);
  fileUrl(token, image.id).then((url) => { img.src = url; }, close);
}

/** A voice note being recorded: start() asks for the microphone, stop() gives the recording, its duration and a
 * waveform summary (up to 100 loudness values, 0-255) measured while it was recorded. */
export class VoiceRecorder {
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    this.chunks = [];
    this.levels = [];
    this.recorder = new MediaRecorder(this.stream);
    this.recorder.ondataavailable = (event) => { if (event.data.size) this.chunks.push(event.data); };
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 256;
    context.createMediaStreamSource(this.stream).connect(analyser);
    const samples = new Uint8Array(analyser.fftSize);
    this.context = context;
    this.sampler = setInterval(() => {
      analyser.getByteTimeDomainData(samples);
      let peak = 0;
      for (const s of samples) peak = Math.max(peak, Math.abs(s - 128));
      this.levels.push(Math.min(255, peak * 2));
    }, 100);
    this.startedAt = performance.now();
    this.recorder.start(250);
  }

  stop() {
    return new Promise((resolve) => {
      this.recorder.onstop = () => {
        clearInterval(this.sampler);
        this.context.close();
        for (const track of this.stream.getTracks()) track.stop();
        const durationMs = Math.max(1, Math.round(performance.now() - this.startedAt));
        const type = this.recorder.mimeType || "audio/webm";
        resolve({ blob: new Blob(this.chunks, { type }), durationMs, waveform: summarize(this.levels, 100) });
      };
      this.recorder.stop();
    });
  }
}

function summarize(levels, count) {
  if (levels.length <= count) return levels.map((v) => Math.round(v));
  const out = [];
  for (let i = 0; i < count; i++) {
    const from = Math.floor((i * levels.length) / count);
    const to = Math.floor(((i + 1) * levels.length) / count);
    out.push(Math.round(Math.max(...levels.slice(from, Math.max(to, from + 1)))));
  }
  return out;
}
