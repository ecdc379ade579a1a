// Wiring: session, connection lifecycle (ready → list → sync → re-send → acks), the page's actions, and rendering on
// change. Protocol details live in protocol.js, state and ordering in store.js, drawing in ui.js.

import { api, ApiError, Connection, Disconnected } from "./protocol.js";
import { directId, isEvent, RECALL_WINDOW_MS, setRecallWindow, Store } from "./store.js";
import { bodyFor, uploadFile, VoiceRecorder } from "./files.js";
import { View } from "./ui.js";
import { SearchBox } from "./search.js";
import { Calls } from "./calls.js"; // calls: hook (the call UI is calls.js)

const SESSION_KEY = "pica.session";
const TYPING_SHOW_MS = 3000;
const TYPING_SEND_EVERY_MS = 2000; // at most one per second (the server drops more), "every few seconds" (14.4)
let historyPage = 50; // messages per history request: the server's page size once `ready` announced it
const GAP_WAIT_MS = 200; // a push ahead of its turn waits this long for the late one before a sync (protocol 8.6)

let session = null; // {token, user_id, username, expires_at, refresh_token, refresh_expires_at}
let renewing = null; // the refresh in flight: requests that find their token expired share it
let store = null;
let conn = null;
let activeId = null;
let renderQueued = false;
let forceRender = true;
let syncing = null;
let syncAgain = false;
let listRefresh = null;
const inflight = new Set(); // client_msg_ids sent on the current connection and not answered yet
const recvQueue = new Set();
const recvSent = new Map();
let recvTimer = null;
const gapTimers = new Map(); // conversation_id -> timeout waiting for a late push
let readTimer = null;
let lastTypingSent = new Map();
let findQuery = ""; // what the find field holds: filters the list, and names someone to look up
let findLookup = null; // {query, state, user}: the look-up of findQuery as a username (view.renderFind)
let findTimer = null;
const FIND_DELAY_MS = 250; // a look-up once typing pauses, not one per key
const USERNAME = /^[a-z0-9_][a-z0-9_.-]{2,31}$/; // what a username may be (protocol 23.2): nothing else is looked up
let calls = null; // calls: hook

const view = new View({
  onAuth: authenticate,
  onNewChat: newChat,
  onNewGroup: newGroup,
  onAddMember: addMember,
  onLogout: () => signOut(),
  onBack: () => openConversation(null),
  onOpen: (id) => openConversation(id),
  onSend: sendText,
  onAttach: attach,
  onRecord: record,
  token: () => session?.token || "",
  onTyping: typing,
  onNearTop: () => loadOlder(),
  onFind: find,
  onFindSubmit: findSubmit,
  onRemovePreview: removePreview,
  menuFor,
});
const searchBox = new SearchBox({ token: () => session?.token || "", store: () => store, open: openConversation });

// ------------------------------------------------------------------------------------------------ helpers

function newClientMsgId() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `w-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function render() {
  if (renderQueued || !store) return;
  renderQueued = true;
  setTimeout(() => {
    renderQueued = false;
    if (!store) return;
    const changes = store.takeChanges();
    const force = forceRender;
    forceRender = false;
    if (force || changes.list) view.renderList(store, activeId, findQuery);
    const conv = activeId ? store.conversations.get(activeId) : null;
    if (force || changes.header || (conv && changes.conversations.has(conv.id))) view.renderChat(store, conv);
    if (conv && (changes.conversations.has(conv.id) || force)) markReadSoon();
    if (conv && conv.kind === "group" && conv.staleInfo && !conv.left) loadGroupInfo(conv);
  }, 0);
}

function rerender() {
  forceRender = true;
  render();
}

function errorText(exc) {
  if (exc instanceof Disconnected) return "Not connected. Try again in a moment.";
  return exc && exc.message ? exc.message : String(exc);
}

// ------------------------------------------------------------------------------------------------ session

function loadSession() {
  try {
    const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    if (saved && saved.token && saved.user_id && (saved.refresh_token
      ? saved.refresh_expires_at * 1000 > Date.now() + 60000
      : saved.expires_at * 1000 > Date.now() + 60000)) {
      return saved;
    }
  } catch {
    // ignore a damaged entry
  }
  localStorage.removeItem(SESSION_KEY);
  return null;
}

async function authenticate(mode, username, password) {
  if (!username || !password) {
    view.authError("Enter a username and a password.");
    return;
  }
  view.authBusy(true);
  view.authError("");
  try {
    if (mode === "register") await api("/v1/auth/register", { method: "POST", body: { username, password } });
    const login = await api("/v1/auth/login", { method: "POST", body: { username, password } });
    session = { user_id: login.user_id, username: username.toLowerCase() };
    keepTokens(login);
    startApp();
  } catch (exc) {
    const messages = {
      invalid_credentials: "Wrong username or password.",
      username_taken: "That username is taken.",
      invalid_username: "Usernames are 3–32 characters: letters, digits, “_”, “.” and “-”.",
      weak_password: "Choose a password of at least 8 characters, with at least 4 different ones.",
      network: "Cannot reach the server.",
    };
    view.authError(messages[exc.code] || errorText(exc));
    view.authBusy(false);
  }
}

function keepTokens(tokens) {
  Object.assign(session, {
    token: tokens.token, expires_at: tokens.expires_at,
    refresh_token: tokens.refresh_token, refresh_expires_at: tokens.refresh_expires_at,
    session_id: tokens.session_id,
  });
  localStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

// A fresh access token from the refresh token (which the server rotates: the old one is spent). Another tab of this
// page may have rotated it already, so the stored session is read first: presenting a spent refresh token would end
// the session everywhere.
function renewToken() {
  if (renewing) return renewing;
  const mine = session;
  renewing = (async () => {
    const stored = loadSession();
    if (stored && stored.user_id === mine.user_id && stored.refresh_token !== mine.refresh_token) {
      Object.assign(mine, stored);
      return mine.token;
    }
    if (!mine.refresh_token) return null;
    try {
      const tokens = await api("/v1/auth/refresh", { method: "POST", body: { refresh_token: mine.refresh_token } });
      if (session !== mine) return null; // logged out meanwhile
      keepTokens(tokens);
      return tokens.token;
    } catch (exc) {
      if (exc instanceof ApiError && exc.status === 401) return null;
      throw exc;
    }
  })().finally(() => { renewing = null; });
  return renewing;
}

function signOut() {
  // End the session on the server too (its tokens stop working, its other sockets close); leave either way.
  if (session && session.token) api("/v1/auth/logout", { method: "POST", token: session.token }).catch(() => {});
  logout();
}

function logout(message = "") {
  if (calls) calls.hangUp(); // calls: hook
  searchBox.clear();
  if (conn) conn.stop();
  conn = null;
  if (store) {
    // Nothing of this account stays in the browser.
    for (const key of Object.keys(localStorage)) if (key.startsWith(store.prefix)) localStorage.removeItem(key);
  }
  store = null;
  session = null;
  activeId = null;
  inflight.clear();
  recvQueue.clear();
  recvSent.clear();
  lastTypingSent = new Map();
  clearTimeout(findTimer);
  findQuery = "";
  findLookup = null;
  view.clearFind();
  view.renderFind(null);
  localStorage.removeItem(SESSION_KEY);
  sessionStorage.removeItem("pica.active");
  view.renderChat(null, null);
  view.setChatOpen(false);
  view.setConnection("stopped");
  view.showAuth("login", message);
}

function startApp() {
  store = new Store(session);
  store.onChange = render;
  store.needList = refreshListSoon;
  const asked = new Set();
  store.resolveName = (userId) => {
    if (asked.has(userId)) return;
    asked.add(userId);
    call(`/v1/users/${userId}`)
      .then((user) => store && store.learnName(user.user_id, user.username))
      .catch(() => {}); // stays "User N"; nothing else depends on it
  };
  view.showApp(session);
  activeId = null;
  conn = new Connection({
    token: session.token,
    device: "web",
    onReady,
    onFrame,
    onStatus: (state, detail) => view.setConnection(state, detail),
    onAuthLost: () => logout("Your session has ended. Please sign in again."),
    renewToken,
  });
  conn.start();
  calls ??= new Calls({ connection: () => conn, api: call, nameOf: (id) => store.nameOf(id) }); // calls: hook
  const remembered = sessionStorage.getItem("pica.active");
  if (remembered) openConversation(remembered);
  rerender();
  // Names and the conversation list can load before the socket is up.
  refreshList().catch(() => {});
  loadMe();
  import("./push.js").then((push) => push.startPush(call)).catch(() => {}); // Web Push: push.js, sw.js
}

async function loadMe() {
  try {
    const me = await call("/v1/me");
    if (store && me.username) {
      store.me.username = me.username;
      session.username = me.username;
      localStorage.setItem(SESSION_KEY, JSON.stringify(session));
      store.learnName(me.user_id, me.username);
      view.showApp(session);
    }
  } catch {
    // call() has signed out if the session is over
  }
}

function authFailure(exc) {
  if (exc instanceof ApiError && exc.status === 401) {
    logout("Your session has ended. Please sign in again.");
    return true;
  }
  return false;
}

async function call(path, options = {}) {
  try {
    try {
      return await api(path, { ...options, token: session.token });
    } catch (exc) {
      if (!(exc instanceof ApiError && exc.code === "token_expired") || !session) throw exc;
      if (!(await renewToken())) throw exc;
      return await api(path, { ...options, token: session.token });
    }
  } catch (exc) {
    authFailure(exc);
    throw exc;
  }
}

// ------------------------------------------------------------------------------------------------ catching up

async function onReady(ready) {
  // The server's limits, not this page's guesses: another deployment may have other settings (6.1).
  setRecallWindow(ready.recall_window);
  if (ready.page_size > 0) historyPage = ready.page_size;
  const myStore = store;
  if (!myStore) return;
  myStore.clockSkew = (Number(ready.time) || Date.now()) - Date.now();
  inflight.clear();
  recvSent.clear();
  try {
    await refreshList(); // cursors for conversations new to this page; receipts and names missed while away
  } catch {
    // the socket may still work; sync from what we have
  }
  if (store !== myStore) return;
  await syncAll();
  resendOutbox();
  refreshPresence();
  const conv = activeId ? store.conversations.get(activeId) : null;
  if (conv && (conv.historyState === "none" || conv.historyState === "failed")) loadLatest(conv);
  markReadSoon();
}

async function refreshList() {
  const myStore = store;
  if (!myStore) return;
  let query = "";
  const listed = new Set();
  let complete = false;
  for (;;) {
    const data = await call(`/v1/conversations${query}`);
    if (store !== myStore) return;
    let fresh = 0;
    for (const summary of data.conversations) {
      myStore.mergeSummary(summary);
      if (!listed.has(summary.conversation_id)) fresh += 1;
      listed.add(summary.conversation_id);
    }
    const last = data.conversations[data.conversations.length - 1];
    if (!last) {
      // Only an empty page ends the list (23.3), whatever the server's page size.
      complete = true;
      break;
    }
    if (!fresh) break; // a page of nothing new: the walk is not advancing, so it proves nothing about the rest
    query = `?before_ts=${last.last_ts}&before_id=${encodeURIComponent(last.conversation_id)}`;
  }
  if (complete) {
    // A group that left the list was left (or we were removed while away): it is gone for us (12.2).
    for (const conv of myStore.conversations.values()) {
      if (conv.kind === "group" && conv.known && !listed.has(conv.id)) {
        conv.known = false;
        conv.left = true;
        myStore.cursors.delete(conv.id);
        myStore.touch(conv.id);
      }
    }
  }
  myStore.persistSoon();
}

function refreshListSoon() {
  clearTimeout(listRefresh);
  listRefresh = setTimeout(() => {
    refreshList().then(refreshPresence).catch(() => {});
  }, 250);
}

/** Sync to completion from the cursors (docs/protocol.md section 9); one at a time, re-run if asked meanwhile. */
async function syncAll() {
  if (syncing) {
    syncAgain = true;
    return syncing;
  }
  const myStore = store;
  const heldBefore = myStore.markHeld();
  syncing = (async () => {
    let unknown = false;
    try {
      do {
        syncAgain = false;
        for (let round = 0; round < 1000; round += 1) {
          const page = await conn.request({ t: "sync", cursors: myStore.cursorSnapshot(), limit: 200 });
          if (store !== myStore) return;
          for (const msg of page.msgs) {
            if (myStore.acceptSynced(msg) === "new") {
              if (!myStore.conversations.has(msg.conversation_id) && !msg.conversation_id.startsWith("u:")) unknown = true;
              myStore.ingest(msg);
              queueRecv(msg.conversation_id);
            }
          }
          if (!page.more) break;
        }
      } while (syncAgain);
      if (store === myStore) {
        for (const conversationId of [...myStore.held.keys()]) releaseHeld(conversationId);
        myStore.forget(heldBefore);
        for (const conversationId of heldBefore.keys()) releaseHeld(conversationId); // ends its wait once emptied
      }
    } catch (exc) {
      if (!(exc instanceof Disconnected)) console.warn("sync failed", exc);
    } finally {
      syncing = null;
    }
    if (unknown) refreshListSoon();
  })();
  return syncing;
}

/** A live message that is next in line (NEW): show it, and acknowledge its receipt. */
function handLive(msg) {
  const known = store.conversations.get(msg.conversation_id);
  if (!msg.conversation_id.startsWith("u:") && (!known || (!known.known && !known.name))) refreshListSoon();
  store.ingest(msg);
  queueRecv(msg.conversation_id);
}

/** Hand out the held messages that are next now; nothing left held: stop waiting, else wait (again). */
function releaseHeld(conversationId) {
  if (store.held.has(conversationId)) for (const msg of store.release(conversationId)) handLive(msg);
  if (store.held.has(conversationId)) {
    waitForLate(conversationId);
  } else if (gapTimers.has(conversationId)) {
    clearTimeout(gapTimers.get(conversationId));
    gapTimers.delete(conversationId);
  }
}

function waitForLate(conversationId) {
  if (gapTimers.has(conversationId)) return;
  const myStore = store;
  gapTimers.set(conversationId, setTimeout(() => {
    gapTimers.delete(conversationId);
    if (store === myStore && myStore.held.has(conversationId)) syncAll(); // still a hole: the sync fills it
  }, GAP_WAIT_MS));
}

function onFrame(frame) {
  if (!store) return;
  if (calls && calls.onFrame(frame)) return; // calls: hook (call_* frames)
  switch (frame.t) {
    case "msg": {
      const verdict = store.accept(frame);
      if (verdict === "new") {
        handLive(frame);
        releaseHeld(frame.conversation_id);
      } else if (verdict === "gap") {
        if (store.hold(frame)) waitForLate(frame.conversation_id);
        else syncAll(); // the sync brings this message and the ones before it
      }
      return;
    }
    case "receipt":
      store.receipt(frame);
      return;
    case "typing": {
      store.setTyping(frame.conversation_id, frame.user_id, Date.now() + TYPING_SHOW_MS);
      setTimeout(() => {
        if (!store) return;
        store.changed.list = true;
        store.changed.header = true;
        render();
      }, TYPING_SHOW_MS + 50);
      return;
    }
    case "presence":
      store.setPresence(frame.user_id, Boolean(frame.online), frame.last_seen);
      return;
    case "contact":
      return; // contacts are not shown by this page yet
    case "resync":
      syncAll(); // the cluster bus was interrupted: live frames may be missing, the sync brings them
      return;
    case "error":
      console.warn("server error", frame.code, frame.message);
      return;
    default:
      // unknown frame types are ignored (section 1, versioning)
  }
}

// ------------------------------------------------------------------------------------------------ acks and reads

function queueRecv(conversationId) {
  if (conversationId.startsWith("u:")) return;
  recvQueue.add(conversationId);
  if (recvTimer) return;
  recvTimer = setTimeout(() => {
    recvTimer = null;
    if (!store || !conn) return;
    for (const id of recvQueue) {
      const seq = store.cursors.get(id) || 0;
      if (seq > (recvSent.get(id) || 0) && conn.send({ t: "recv", conversation_id: id, seq })) recvSent.set(id, seq);
    }
    recvQueue.clear();
  }, 400);
}

function markReadSoon() {
  if (readTimer) return;
  readTimer = setTimeout(() => {
    readTimer = null;
    markRead();
  }, 250);
}

/** Read receipt for the open conversation, when it is actually on screen. */
function markRead() {
  if (!store || !conn || !activeId || document.visibilityState !== "visible" || !view.chatVisible()) return;
  const conv = store.conversations.get(activeId);
  if (!conv) return;
  let top = 0;
  for (const seq of conv.messages.keys()) if (seq > top) top = seq;
  if (top <= conv.readSeq) return;
  const previous = conv.readSeq;
  conv.readSeq = top;
  store.touch(conv.id);
  conn.request({ t: "read", conversation_id: conv.id, seq: top }).catch(() => {
    if (store && conv.readSeq === top) conv.readSeq = previous; // try again on the next chance
  });
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markReadSoon();
});
window.addEventListener("resize", () => markReadSoon());

async function refreshPresence() {
  if (!store) return;
  const peers = [...new Set([...store.conversations.values()]
    .filter((c) => c.kind === "direct" && c.peerId && c.peerId !== store.me.user_id)
    .map((c) => c.peerId))].slice(0, 500);
  if (!peers.length) return;
  try {
    const data = await call(`/v1/presence?user_ids=${peers.join(",")}`);
    for (const p of data.presence) store?.setPresence(p.user_id, p.online, p.last_seen);
  } catch {
    // presence is decoration
  }
}

// ------------------------------------------------------------------------------------------------ sending

function sendText(text) {
  sendBody({ text });
}

function sendBody(body) {
  const conv = activeId ? store.conversations.get(activeId) : null;
  if (!conv) return;
  const item = { conversation_id: conv.id, client_msg_id: newClientMsgId(), body, ts: store.serverNow() };
  if (conv.kind === "group") item.group_id = conv.groupId;
  else item.to = conv.peerId;
  store.queueSend(item);
  transmit(item);
}

// Files: uploaded first (with progress under the message box), then sent as a message naming the upload.
async function attach(files) {
  for (const file of files) {
    const conversation = activeId;
    try {
      view.uploadProgress(`Sending ${file.name}…`);
      const info = await uploadFile(session.token, file, (sent, total) => {
        view.uploadProgress(`Sending ${file.name}… ${Math.round((100 * sent) / total)}%`);
      });
      if (activeId === conversation) sendBody(bodyFor(info));
    } catch (exc) {
      view.toast(`${file.name} not sent: ${exc.message}`);
    } finally {
      view.uploadProgress(null);
    }
  }
}

let recorder = null; // the voice note being recorded

async function record() {
  if (!recorder) {
    const starting = new VoiceRecorder();
    try {
      await starting.start();
    } catch (exc) {
      view.toast(`No microphone: ${exc.message}`);
      return;
    }
    recorder = starting;
    view.recording(true);
    return;
  }
  const done = recorder;
  recorder = null;
  view.recording(false);
  const voice = await done.stop();
  const file = new File([voice.blob], "voice-note.webm", { type: voice.blob.type });
  try {
    view.uploadProgress("Sending the voice note…");
    const info = await uploadFile(session.token, file);
    sendBody(bodyFor(info, { voice }));
  } catch (exc) {
    view.toast(`Voice note not sent: ${exc.message}`);
  } finally {
    view.uploadProgress(null);
  }
}

function transmit(item) {
  if (!conn || inflight.has(item.client_msg_id)) return;
  inflight.add(item.client_msg_id);
  const frame = { t: "send", client_msg_id: item.client_msg_id, body: item.body };
  if (item.group_id) frame.group_id = item.group_id;
  else frame.to = item.to;
  const myStore = store;
  conn.request(frame).then((sent) => {
    inflight.delete(item.client_msg_id);
    if (store === myStore) acknowledged(item.body, sent);
  }, (exc) => {
    inflight.delete(item.client_msg_id);
    if (store !== myStore) return;
    if (exc instanceof Disconnected || exc.retryable) {
      // Kept in the outbox: re-sent with the same client_msg_id after the next ready, or, if retryable, after the
      // retry_after a rate limit gave (sooner is refused again) or 2 s.
      const delayMs = exc.retryAfter ? Math.ceil(exc.retryAfter * 1000) : 2000;
      if (!(exc instanceof Disconnected)) setTimeout(() => { if (store === myStore && conn?.ready) transmit(item); }, delayMs);
      return;
    }
    item.failed = exc.message || exc.code;
    myStore.dropFromOutbox(item.client_msg_id);
    myStore.touch(item.conversation_id);
    view.toast(`Message not sent: ${item.failed}`);
  });
}

function resendOutbox() {
  for (const item of store.outbox) transmit(item);
}

/** Our own send or event was stored: it counts as a live message of ours (docs/protocol.md 8.5). */
function acknowledged(body, sent) {
  const msg = { conversation_id: sent.conversation_id, seq: sent.seq, sender: store.me.user_id,
    client_msg_id: sent.client_msg_id, ts: sent.ts, body };
  const verdict = store.accept(msg);
  if (verdict === "new") {
    store.ingest(msg);
  } else {
    store.insert(msg); // ours, and authoritative: show it now; a gap before it is filled by sync
    if (verdict === "gap") syncAll();
  }
  queueRecv(msg.conversation_id);
}

function typing() {
  if (!conn || !activeId) return;
  const now = Date.now();
  if (now - (lastTypingSent.get(activeId) || 0) < TYPING_SEND_EVERY_MS) return;
  if (conn.send({ t: "typing", conversation_id: activeId })) lastTypingSent.set(activeId, now);
}

// ------------------------------------------------------------------------------------------------ conversations

function openConversation(id) {
  if (!store) return;
  activeId = id;
  if (id) sessionStorage.setItem("pica.active", id);
  else sessionStorage.removeItem("pica.active");
  view.setChatOpen(Boolean(id));
  const conv = id ? store.conversation(id) : null;
  // calls: hook (the call buttons are for a 1:1 with someone else)
  if (calls) calls.setPeer(conv && conv.kind === "direct" && conv.peerId !== store.me.user_id ? conv.peerId : null);
  if (conv) {
    if (conv.historyState === "none" || conv.historyState === "failed") loadLatest(conv);
    if (conv.kind === "group") loadGroupInfo(conv);
    else refreshPresence();
    view.focusComposer();
  }
  rerender();
}

async function loadLatest(conv) {
  if (!conn || !conn.ready) return; // after the next ready
  conv.historyState = "loading";
  store.touch(conv.id, { list: false });
  try {
    const page = await conn.request({ t: "history", conversation_id: conv.id, limit: historyPage });
    for (const msg of page.msgs) store.insert(msg);
    conv.historyState = page.more ? "partial" : "complete";
  } catch (exc) {
    // A 1:1 that has no message yet does not exist on the server.
    conv.historyState = exc.code === "conversation_not_found" ? "complete" : "failed";
  }
  store.touch(conv.id, { list: false });
}

async function loadOlder() {
  const conv = activeId ? store?.conversations.get(activeId) : null;
  if (!conv || conv.historyState !== "partial" || !conn || !conn.ready) return;
  const before = store.oldestLoaded(conv);
  if (!before || before <= 1) {
    conv.historyState = "complete";
    store.touch(conv.id, { list: false });
    return;
  }
  conv.historyState = "loading";
  store.touch(conv.id, { list: false });
  try {
    const page = await conn.request({ t: "history", conversation_id: conv.id, before, limit: historyPage });
    for (const msg of page.msgs) store.insert(msg);
    conv.historyState = page.more ? "partial" : "complete";
  } catch {
    conv.historyState = "partial";
  }
  store.touch(conv.id, { list: false });
}

async function loadGroupInfo(conv) {
  conv.staleInfo = false;
  try {
    const group = await call(`/v1/groups/${conv.groupId}`);
    conv.name = group.name;
    conv.memberCount = group.member_count;
    conv.dissolved = group.dissolved;
    conv.myRole = group.owner_id === store?.me.user_id ? "owner" : await myRole(conv);
  } catch (exc) {
    if (exc.code === "group_not_found") conv.left = true;
  }
  if (!store) return;
  store.changed.header = true;
  store.touch(conv.id);
}

/** My role in a group I do not own: "admin" or "member", from its member list. */
async function myRole(conv) {
  const data = await call(`/v1/groups/${conv.groupId}/members`);
  const me = data.members.find((m) => m.user_id === store?.me.user_id);
  return me ? me.role : "";
}

async function findUser(username) {
  const name = username.trim().replace(/^@/, "");
  if (!name) throw new Error("Enter a username.");
  try {
    const user = await call(`/v1/users?username=${encodeURIComponent(name)}`);
    store.learnName(user.user_id, user.username);
    return user;
  } catch (exc) {
    if (exc.code === "user_not_found" || exc.code === "bad_request" || exc.code === "invalid_username") {
      throw new Error(`No user named “${name}”.`);
    }
    throw exc;
  }
}

function newChat() {
  view.form({
    title: "New chat",
    fields: [{ name: "username", label: "Username", placeholder: "e.g. bob" }],
    submit: "Start chat",
    onSubmit: async ({ username }) => chatWith(await findUser(username)),
  });
}

function chatWith(user) {
  const conv = store.conversation(directId(store.me.user_id, user.user_id));
  if (!conv.lastTs) {
    conv.localCreated = true;
    conv.lastTs = store.serverNow();
  }
  openConversation(conv.id);
}

// ------------------------------------------------------------------------------------------------ finding people

/**
 * The find field: the list shows the conversations whose name holds what was typed, and a name that could be a
 * username is looked up (GET /v1/users?username=, exact: the server has no directory to browse), unless a 1:1 with
 * that person is listed already.
 */
function find(query) {
  findQuery = query;
  clearTimeout(findTimer);
  rerender();
  const name = query.trim().replace(/^@/, "").toLowerCase();
  const listed = store && [...store.conversations.values()].some((c) => c.kind === "direct" && c.peerId !== store.me.user_id
    && (c.known || c.lastSeq > 0) && store.displayName(c).toLowerCase() === name);
  if (!store || !USERNAME.test(name) || name === store.me.username || listed) {
    findLookup = null;
    view.renderFind(null);
    return;
  }
  findLookup = { query: name, state: "looking" };
  view.renderFind(findLookup);
  findTimer = setTimeout(async () => {
    let found;
    try {
      const user = await call(`/v1/users?username=${encodeURIComponent(name)}`);
      found = user.deleted ? { query: name, state: "none" } : { query: name, state: "found", user };
      if (!user.deleted) store?.learnName(user.user_id, user.username);
    } catch (exc) {
      found = { query: name, state: exc.code === "user_not_found" ? "none" : "error" };
    }
    if (findLookup && findLookup.query === name && findQuery === query) {
      findLookup = found;
      // "No one is called …" under conversations that match says nothing useful: they are what was looked for.
      const listedMatch = store && store.ordered().some((c) => store.displayName(c).toLowerCase().includes(name));
      view.renderFind(found.state === "none" && listedMatch ? null : found);
    }
  }, FIND_DELAY_MS);
}

/** Enter in the find field (or a click on the person found): chat with them, or open the first conversation. */
async function findSubmit(query) {
  if (!store || !query.trim()) return;
  const name = query.trim().replace(/^@/, "").toLowerCase();
  const shown = store.ordered().filter((c) => store.displayName(c).toLowerCase().includes(query.trim().toLowerCase()));
  const exact = shown.find((c) => store.displayName(c).toLowerCase() === name);
  try {
    if (exact || (shown.length && !(findLookup && findLookup.state === "found"))) {
      openConversation((exact || shown[0]).id);
    } else if (USERNAME.test(name) && name !== store.me.username) {
      chatWith(await findUser(name));
    } else {
      return;
    }
  } catch (exc) {
    findLookup = { query: name, state: "none" };
    view.renderFind(findLookup);
    return;
  }
  findLookup = null;
  view.renderFind(null);
  view.clearFind();
}

function newGroup() {
  view.form({
    title: "New group",
    fields: [
      { name: "name", label: "Group name", placeholder: "e.g. Weekend trip" },
      { name: "members", label: "People (usernames, separated by commas)", placeholder: "bob, carol" },
    ],
    submit: "Create group",
    onSubmit: async ({ name, members }) => {
      if (!name.trim()) throw new Error("Give the group a name.");
      const names = [...new Set(members.split(/[\s,;]+/).map((n) => n.trim()).filter(Boolean))];
      const users = [];
      for (const username of names) users.push(await findUser(username));
      const group = await call("/v1/groups", { method: "POST", body: { name: name.trim(), members: users.map((u) => u.user_id) } });
      const conv = store.conversation(group.conversation_id);
      conv.name = group.name;
      conv.groupId = group.group_id;
      conv.memberCount = group.member_count;
      conv.known = true;
      if (!conv.lastTs) conv.lastTs = group.created_at;
      openConversation(conv.id);
    },
  });
}

function addMember() {
  const conv = activeId ? store.conversations.get(activeId) : null;
  if (!conv || !store.mayAddMembers(conv)) return;
  view.form({
    title: `Add people to ${store.displayName(conv)}`,
    fields: [{ name: "usernames", label: "Usernames, separated by commas", placeholder: "dave" }],
    submit: "Add",
    onSubmit: async ({ usernames }) => {
      const names = [...new Set(usernames.split(/[\s,;]+/).map((n) => n.trim()).filter(Boolean))];
      if (!names.length) throw new Error("Enter at least one username.");
      const users = [];
      for (const username of names) users.push(await findUser(username));
      const group = await call(`/v1/groups/${conv.groupId}/members`, { method: "POST", body: { user_ids: users.map((u) => u.user_id) } });
      conv.memberCount = group.member_count;
      store.changed.header = true;
      store.touch(conv.id);
      view.toast(`Added ${users.map((u) => u.username).join(", ")}`);
    },
  });
}

// ------------------------------------------------------------------------------------------------ message actions

function menuFor(seq) {
  const conv = activeId ? store.conversations.get(activeId) : null;
  const msg = conv?.messages.get(seq);
  if (!msg || msg.body.system || isEvent(msg.body)) return [];
  const items = [];
  const mine = msg.sender === store.me.user_id;
  const gone = msg.body.recalled || msg.body.deleted;
  if (typeof msg.body.text === "string" && !gone) {
    items.push({ id: "copy", label: "Copy text", run: () => navigator.clipboard?.writeText(msg.body.text).catch(() => {}) });
  }
  if (mine && !gone && typeof msg.body.text === "string") items.push({ id: "edit", label: "Edit", run: () => editMessage(conv, msg) });
  if (mine && !gone && store.serverNow() - msg.ts < RECALL_WINDOW_MS) {
    items.push({ id: "recall", label: "Recall", danger: true, run: () => recallMessage(conv, msg) });
  }
  if (!msg.body.deleted) items.push({ id: "delete", label: "Delete for me", danger: true, run: () => deleteForMe(conv, msg) });
  return items;
}

async function sendEvent(conv, frame, body) {
  const sent = await conn.request({ ...frame, conversation_id: conv.id, client_msg_id: newClientMsgId() });
  acknowledged(body, sent);
}

async function removePreview(seq) {
  const conv = activeId ? store.conversations.get(activeId) : null;
  if (!conv || !conn) return;
  try {
    await sendEvent(conv, { t: "unpreview", seq }, { preview: { seq, removed: true } });
  } catch (exc) {
    view.toast(`Could not remove the preview: ${errorText(exc)}`);
  }
}

function editMessage(conv, msg) {
  view.form({
    title: "Edit message",
    fields: [{ name: "text", label: "Message", value: msg.body.text, multiline: true }],
    submit: "Save",
    onSubmit: async ({ text }) => {
      if (!text.trim()) throw new Error("A message cannot be empty.");
      if (text === msg.body.text) return;
      try {
        await sendEvent(conv, { t: "edit", seq: msg.seq, text }, { edit: { seq: msg.seq, text } });
      } catch (exc) {
        throw new Error(errorText(exc));
      }
    },
  });
}

function recallMessage(conv, msg) {
  view.form({
    title: "Recall this message?",
    description: "It disappears for everyone in the conversation.",
    submit: "Recall",
    danger: true,
    onSubmit: async () => {
      try {
        await sendEvent(conv, { t: "recall", seq: msg.seq }, { recall: { seq: msg.seq } });
      } catch (exc) {
        throw new Error(errorText(exc));
      }
    },
  });
}

async function deleteForMe(conv, msg) {
  try {
    await conn.request({ t: "delete", conversation_id: conv.id, seq: msg.seq });
    store.patch(conv.id, msg.seq, { kind: "deleted", seq: 0 });
  } catch (exc) {
    view.toast(`Could not delete: ${errorText(exc)}`);
  }
}

// ------------------------------------------------------------------------------------------------ start

setInterval(() => {
  // Relative times ("last seen 3 min ago") and the recall window age without any event.
  if (store) rerender();
}, 30000);

session = loadSession();
if (session) startApp();
else view.showAuth("login");
