// 1:1 voice and video calls (docs/protocol.md, "Calls"): the call buttons of a direct conversation, the ringing and
// in-call panel, and the RTCPeerConnection whose offer, answer and candidates travel as call frames on the page's
// socket. app.js hands it the connection and the names and forwards every call_* frame to onFrame.
//
// The panel and the buttons are made here (no markup in index.html); their style is calls.css, loaded from here.

const STATS_EVERY_MS = 1000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "testid") node.dataset.testid = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  phone: ["M5 4h4l2 5-2.5 1.5a11 11 0 0 0 5 5L15 13l5 2v4a2 2 0 0 1-2 2A16 16 0 0 1 3 6a2 2 0 0 1 2-2z"],
  video: ["M3 7h12v10H3z", "M15 10l6-3v10l-6-3z"],
  mic: ["M12 3a3 3 0 0 0-3 3v5a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3z", "M5 11a7 7 0 0 0 14 0", "M12 18v3"],
  end: ["M6 6l12 12", "M18 6L6 18"],
};

/** An icon drawn like app.css's icon buttons (stroked paths), made with DOM calls: no markup strings. */
function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  for (const d of ICONS[name]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

function clock(ms) {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

const OUTCOME_TEXT = {
  answered: "Call",
  missed: "Missed call",
  declined: "Declined call",
  cancelled: "Cancelled call",
  failed: "Call failed",
};

/** The text of a call record in the timeline (protocol 7.3), from the reader's side. */
export function callRecordText(body, mine) {
  const call = body.call || {};
  const kind = call.media === "video" ? "video call" : "voice call";
  let text = `${mine ? "Outgoing" : "Incoming"} ${kind}`;
  if (call.outcome === "answered") text += ` · ${clock(call.duration_ms || 0)}`;
  else text = `${OUTCOME_TEXT[call.outcome] || "Call"} · ${kind}`;
  return text;
}

const ENDED_TEXT = {
  declined: "Declined",
  cancelled: "Cancelled",
  timeout: "No answer",
  hung_up: "Call ended",
  answered_elsewhere: "Answered on another device",
  declined_elsewhere: "Declined on another device",
  disconnected: "Connection lost",
  shutdown: "The server restarted",
};

export class Calls {
  /**
   * @param {{connection: () => any, api: (path: string) => Promise<any>, nameOf: (id: number) => string}} deps
   */
  constructor(deps) {
    this.deps = deps;
    this.call = null; // {id, peer, media, role, pc, stream, state, pending: [], remoteSet, startedAt}
    this.peerId = null; // the open direct conversation's other user (the call buttons' target)
    document.head.append(el("link", { rel: "stylesheet", href: "/static/calls.css" }));
    this.panel = el("div", { class: "call-panel", testid: "call-panel", role: "dialog", "aria-live": "polite" });
    this.panel.hidden = true;
    document.body.append(this.panel);
    this.buttons = el("span", { class: "call-buttons" },
      this._button("call-voice", "Voice call", "phone", () => this.start("audio"), "icon-button"),
      this._button("call-video", "Video call", "video", () => this.start("video"), "icon-button"));
    this.buttons.hidden = true;
    const header = document.getElementById("chat-header");
    if (header) header.insertBefore(this.buttons, document.getElementById("add-member"));
    this.statsTimer = null;
  }

  /** The open conversation changed: the call buttons are for a direct conversation with someone else. */
  setPeer(peerId) {
    this.peerId = peerId;
    this.buttons.hidden = !peerId;
  }

  // ---------------------------------------------------------------------------------------------- placing

  async start(media) {
    if (this.call || !this.peerId) return;
    const peer = this.peerId;
    const call = this._new(peer, media, "caller");
    this._show("Calling…");
    try {
      await this._open(call);
      const offer = await call.pc.createOffer();
      await call.pc.setLocalDescription(offer);
      const placed = await this.deps.connection().request({ t: "call_invite", to: peer, media, sdp: offer.sdp });
      if (this.call !== call) { // hung up while the invite was on its way
        this.deps.connection().send({ t: "call_cancel", call_id: placed.call_id });
        return;
      }
      call.id = placed.call_id;
      this._trickle(call);
    } catch (exc) {
      this._end(call, exc.code === "busy" ? "Busy" : (exc.message || "The call failed"));
    }
  }

  // ---------------------------------------------------------------------------------------------- frames

  /** A call_* frame from the socket; returns true when it was one. */
  onFrame(frame) {
    if (!frame.t || !frame.t.startsWith("call_")) return false;
    const call = this.call;
    if (frame.t === "call_incoming") {
      if (call) return true; // the server rings no one who is in a call; a second page of mine answers it
      this._incoming(frame);
      return true;
    }
    if (!call || call.id !== frame.call_id) return true;
    if (frame.t === "call_ringing") this._status("Ringing…");
    else if (frame.t === "call_accepted") this._accepted(call, frame.sdp);
    else if (frame.t === "call_candidate") this._remoteCandidate(call, frame);
    else if (frame.t === "call_ended") this._end(call, ENDED_TEXT[frame.reason] || "Call ended");
    return true;
  }

  _incoming(frame) {
    const call = this._new(frame.caller, frame.media, "callee");
    call.id = frame.call_id;
    call.offer = frame.sdp;
    const kind = frame.media === "video" ? "video" : "voice";
    const ringing = (name) => `${name} is calling (${kind})…`;
    this._show(ringing(this.deps.nameOf(frame.caller)), true);
    this.deps.connection().send({ t: "call_ringing", call_id: call.id });
    // A caller this page has no name for yet (a first contact): ask, and show it while it still rings.
    this.deps.api(`/v1/users/${frame.caller}`)
      .then((user) => { if (this.call === call && call.state === "ringing") this._status(ringing(user.username)); })
      .catch(() => {});
  }

  async answer() {
    const call = this.call;
    if (!call || call.role !== "callee" || call.state !== "ringing") return;
    call.state = "answering";
    this._show("Connecting…");
    try {
      await this._open(call);
      await call.pc.setRemoteDescription({ type: "offer", sdp: call.offer });
      call.remoteSet = true;
      this._applyCandidates(call);
      const answer = await call.pc.createAnswer();
      await call.pc.setLocalDescription(answer);
      const accepted = this.deps.connection().request({ t: "call_accept", call_id: call.id, sdp: answer.sdp });
      this._trickle(call); // after call_accept on the same socket: the server takes candidates once answered
      await accepted;
      call.state = "connected";
      this._inCall(call);
    } catch (exc) {
      this._end(call, ENDED_TEXT[exc.code === "call_not_found" ? "answered_elsewhere" : ""] || "The call failed");
    }
  }

  async _accepted(call, sdp) {
    try {
      await call.pc.setRemoteDescription({ type: "answer", sdp });
      call.remoteSet = true;
      this._applyCandidates(call);
      call.state = "connected";
      this._inCall(call);
    } catch {
      this.hangUp();
    }
  }

  _remoteCandidate(call, frame) {
    const candidate = { candidate: frame.candidate, sdpMid: frame.sdp_mid ?? null,
                        sdpMLineIndex: frame.sdp_mline_index ?? null };
    call.remote.push(candidate);
    if (call.remoteSet) this._applyCandidates(call);
  }

  _applyCandidates(call) {
    for (const candidate of call.remote.splice(0)) call.pc.addIceCandidate(candidate).catch(() => {});
  }

  // ---------------------------------------------------------------------------------------------- ending

  /** The red button: cancel (caller, not answered), decline (callee, ringing) or hang up. */
  hangUp() {
    const call = this.call;
    if (!call) return;
    if (call.id) {
      const t = call.state === "connected" ? "call_hangup" : (call.role === "caller" ? "call_cancel" : "call_decline");
      this.deps.connection().send({ t, call_id: call.id });
    }
    this._end(call, call.role === "callee" && call.state === "ringing" ? "Declined" : "Call ended");
  }

  _end(call, text) {
    if (this.call !== call) return;
    this.call = null;
    clearInterval(this.statsTimer);
    this.statsTimer = null;
    if (call.pc) call.pc.close();
    if (call.stream) for (const track of call.stream.getTracks()) track.stop();
    this._show(text);
    this.panel.dataset.state = "ended";
    setTimeout(() => { if (!this.call) this.panel.hidden = true; }, 2500);
  }

  // ---------------------------------------------------------------------------------------------- media

  _new(peer, media, role) {
    const call = { id: null, peer, media, role, pc: null, stream: null, state: role === "caller" ? "calling" : "ringing",
                   local: [], remote: [], remoteSet: false, trickling: false, startedAt: 0, offer: null };
    this.call = call;
    return call;
  }

  async _iceServers() {
    try {
      const turn = await this.deps.api("/v1/turn");
      return [{ urls: turn.urls, username: turn.username, credential: turn.credential }];
    } catch {
      return []; // no TURN configured: direct and STUN-less host candidates only
    }
  }

  async _open(call) {
    call.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.media === "video" });
    call.pc = new RTCPeerConnection({ iceServers: await this._iceServers() });
    for (const track of call.stream.getTracks()) call.pc.addTrack(track, call.stream);
    call.pc.onicecandidate = (event) => {
      if (!event.candidate || !event.candidate.candidate) return;
      call.local.push(event.candidate);
      if (call.trickling) this._trickle(call);
    };
    call.pc.ontrack = (event) => {
      const video = this.panel.querySelector('[data-testid="remote-video"]');
      if (video) video.srcObject = event.streams[0] || new MediaStream([event.track]);
    };
    call.pc.onconnectionstatechange = () => {
      if (call.pc && call.pc.connectionState === "connected") this.panel.dataset.state = "connected";
    };
  }

  /** Send the candidates gathered so far and, from now on, each as it comes. */
  _trickle(call) {
    call.trickling = true;
    for (const c of call.local.splice(0)) {
      this.deps.connection().send({ t: "call_candidate", call_id: call.id, candidate: c.candidate,
                                    sdp_mid: c.sdpMid ?? undefined, sdp_mline_index: c.sdpMLineIndex ?? undefined });
    }
  }

  async _stats(call) {
    if (!call.pc) return;
    let received = 0;
    const report = await call.pc.getStats();
    report.forEach((s) => { if (s.type === "inbound-rtp") received += s.bytesReceived || 0; });
    this.panel.dataset.bytesReceived = String(received);
    const line = this.panel.querySelector('[data-testid="call-status"]');
    if (line && this.call === call) line.textContent = `${this.deps.nameOf(call.peer)} · ${clock(Date.now() - call.startedAt)}`;
  }

  // ---------------------------------------------------------------------------------------------- the panel

  _button(testid, label, iconName, onClick, extra = "call-button") {
    const button = el("button", { type: "button", class: extra, testid, title: label, "aria-label": label },
                      icon(iconName));
    button.addEventListener("click", onClick);
    return button;
  }

  _show(text, ringing = false) {
    this.panel.replaceChildren(el("p", { class: "call-status", testid: "call-status", text }));
    const actions = el("div", { class: "call-actions" });
    if (ringing) actions.append(this._button("call-accept", "Answer", "phone", () => this.answer(), "call-button accept"));
    actions.append(this._button("call-hangup", ringing ? "Decline" : "Hang up", "end", () => this.hangUp(),
                                "call-button hangup"));
    this.panel.append(actions);
    this.panel.dataset.state = ringing ? "ringing" : (this.call ? this.call.state : "ended");
    this.panel.hidden = false;
  }

  _status(text) {
    const line = this.panel.querySelector('[data-testid="call-status"]');
    if (line) line.textContent = text;
  }

  _inCall(call) {
    call.startedAt = Date.now();
    const remote = el("video", { class: "call-remote", testid: "remote-video", autoplay: "", playsinline: "" });
    const local = el("video", { class: "call-local", testid: "local-video", autoplay: "", playsinline: "" });
    local.muted = true;
    local.srcObject = call.stream;
    const receivers = call.pc.getReceivers().map((r) => r.track).filter(Boolean);
    if (receivers.length) remote.srcObject = new MediaStream(receivers);
    const mute = this._button("call-mute", "Mute", "mic", () => {
      const on = call.stream.getAudioTracks().some((t) => t.enabled);
      for (const t of call.stream.getAudioTracks()) t.enabled = !on;
      mute.setAttribute("aria-pressed", String(on));
    });
    const camera = this._button("call-camera", "Camera off", "video", () => {
      const on = call.stream.getVideoTracks().some((t) => t.enabled);
      for (const t of call.stream.getVideoTracks()) t.enabled = !on;
      camera.setAttribute("aria-pressed", String(on));
    });
    camera.hidden = call.media !== "video";
    const hangup = this._button("call-hangup", "Hang up", "end", () => this.hangUp(), "call-button hangup");
    this.panel.replaceChildren(
      el("p", { class: "call-status", testid: "call-status", text: this.deps.nameOf(call.peer) }),
      remote, local, el("div", { class: "call-actions" }, mute, camera, hangup));
    if (call.media !== "video") { remote.classList.add("audio-only"); local.hidden = true; }
    this.panel.dataset.state = call.pc.connectionState === "connected" ? "connected" : "connecting";
    this.panel.hidden = false;
    clearInterval(this.statsTimer);
    this.statsTimer = setInterval(() => this._stats(call).catch(() => {}), STATS_EVERY_MS);
  }
}
