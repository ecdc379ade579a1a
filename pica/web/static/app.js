// Wiring: the session, the SDK's client (pica-client.js, built from sdk/js: connection, sync, ordering, outbox), the
// page's actions, and rendering on change. The page's state lives in model.js, drawing in ui.js.

import { api, Disconnected, newClientMsgId as sdkClientMsgId, PicaClient, PicaError } from "./pica-client.js";
import { directId, isEvent, RECALL_WINDOW_MS, setRecallWindow, Store } from "./model.js";
import { bodyFor, uploadFile, VoiceRecorder } from "./files.js";
import { View } from "./ui.js";
import { SearchBox } from "./search.js";
import { Calls } from "./calls.js"; // calls: hook (the call UI is calls.js)
import { Organize } from "./forward.js"; // organize: hook (forwarding, pins, drafts, list settings)
import { Extras, QUICK_EMOJI } from "./reactions.js"; // reactions, replies, threads, mentions: hook
import { h } from "./ui.js";

const SESSION_KEY = "pica.session";
const TYPING_SHOW_MS = 3000;
const TYPING_SEND_EVERY_MS = 2000; // at most one per second (the server drops more), "every few seconds" (14.4)
let historyPage = 50; // messages per history request: the server's page size once `ready` announced it

let session = null; // {token, user_id, username, expires_at, refresh_token, refresh_expires_at}
let store = null;
let client = null; // the SDK's PicaClient of this session
let activeId = null;
let renderQueued = false;
let forceRender = true;
let listRefresh = null;
let readTimer = null;
let lastTypingSent = new Map();
let findQuery = ""; // what the find field holds: filters the list, and names someone to look up
let findLookup = null; // {query, state, user}: the look-up of findQuery as a username (view.renderFind)
let findTimer = null;
const FIND_DELAY_MS = 250; // a look-up once typing pauses, not one per key
const USERNAME = /^[a-z0-9_][a-z0-9_.-]{2,31}$/; // what a username may be (protocol 23.2): nothing else is looked up
let calls = null; // calls: hook
let organize = null; // organize: hook
let extras = null; // reactions.js: the reply bar, mention suggestions and thread pane

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
  onReact: (seq, emoji, mine) => react(seq, emoji, mine).catch((exc) => view.toast(`Could not react: ${errorText(exc)}`)),
  onOpenThread: (seq) => activeConversation() && extras.openThread(activeConversation(), seq),
  onQuote: (seq) => document.querySelector(`#messages [data-seq="${seq}"]`)?.scrollIntoView({ block: "center" }),
});
const searchBox = new SearchBox({ token: () => session?.token || "", store: () => store, open: openConversation });

// ------------------------------------------------------------------------------------------------ helpers

function newClientMsgId() {
  return sdkClientMsgId("w-"); // getRandomValues: unlike crypto.randomUUID it works on plain http too
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
    if (force || changes.header || (conv && changes.conversations.has(conv.id))) {
      view.renderChat(store, conv);
      extras?.renderThread();
    }
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

// The refresh token is rotated by the server (the old one is spent): another tab of this page may have rotated it
// already, so the SDK asks for the stored session before refreshing (presenting a spent refresh token would end the
// session everywhere).
function newerTokens() {
  const stored = loadSession();
  if (!stored || !session || stored.user_id !== session.user_id || stored.refresh_token === session.refresh_token) {
    return null;
  }
  Object.assign(session, stored);
  return stored;
}

function signOut() {
  // End the session on the server too (its tokens stop working, its other sockets close); leave either way.
  if (client) client.http.logout().catch(() => {});
  logout();
}

function logout(message = "") {
  if (calls) calls.hangUp(); // calls: hook
  searchBox.clear();
  if (client) client.close();
  client = null;
  if (store) {
    // Nothing of this account stays in the browser.
    for (const key of Object.keys(localStorage)) if (key.startsWith(store.prefix)) localStorage.removeItem(key);
  }
  store = null;
  session = null;
  activeId = null;
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
  client = new PicaClient({
    url: "",
    token: session.token,
    refreshToken: session.refresh_token,
    userId: session.user_id,
    device: "web",
    storage: localStorage, // cursors and unacknowledged sends under pica.<user_id>. (cleared at logout)
    storagePrefix: "pica.",
    onTokens: keepTokens,
    newerTokens,
    beforeSync: onReady,
  });
  const myClient = client;
  const mine = (handler) => (event) => { if (client === myClient && store) handler(event); };
  client.on("status", ({ state, detail }) => { if (client === myClient) view.setConnection(state, detail); });
  client.on("authLost", mine(() => logout("Your session has ended. Please sign in again.")));
  client.on("connected", mine(onConnected));
  client.on("message", mine(onMessage));
  client.on("ack", mine(({ message }) => store.ingest(message)));
  client.on("sendFailed", mine(({ item, error }) => {
    const failed = store.failPending(item.client_msg_id, error.message || error.code);
    if (failed || item.frame.t === "send") view.toast(`Message not sent: ${error.message || error.code}`);
  }));
  client.on("receipt", mine((frame) => store.receipt(frame)));
  client.on("presence", mine((frame) => store.setPresence(frame.user_id, Boolean(frame.online), frame.last_seen)));
  client.on("typing", mine(onTyping));
  client.on("call", mine((frame) => calls && calls.onFrame(frame))); // calls: hook (call_* frames)
  client.on("frame", mine((frame) => { // frames the SDK has no event of its own for
    if (frame.t === "conversation" && organize) organize.onState(frame); // organize: hook (my draft or list settings)
  }));
  client.on("error", mine((frame) => console.warn("server error", frame.code, frame.message)));
  store = new Store(session, client);
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
  client.start().catch(() => {}); // the banner shows the connection's state; authLost signs out
  calls ??= new Calls({ connection: () => client?.connection || OFFLINE, api: call, nameOf: (id) => store.nameOf(id) }); // calls: hook
  organize ??= new Organize({ api: call, store: () => store, active: () => activeId, rerender, // organize: hook
    toast: (text) => view.toast(text), newId: newClientMsgId });
  extras ??= new Extras({ h, store: () => store, client: () => client, call, send: sendBody,
    toast: (text) => view.toast(text), rerender, activeConversation,
    composer: document.getElementById("composer-input"), composerForm: document.getElementById("composer") });
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
  if (exc instanceof PicaError && exc.status === 401) {
    logout("Your session has ended. Please sign in again.");
    return true;
  }
  return false;
}

/** An authenticated HTTP call; the SDK renews an expired access token and tries again. */
async function call(path, options = {}) {
  try {
    return await client.http.request(options.method || "GET", path, options.body);
  } catch (exc) {
    authFailure(exc);
    throw exc;
  }
}

// ------------------------------------------------------------------------------------------------ catching up

/** After each `ready`, before the SDK syncs: the server's limits, and the list (where new conversations start). */
async function onReady(ready) {
  // The server's limits, not this page's guesses: another deployment may have other settings (6.1).
  setRecallWindow(ready.recall_window);
  if (ready.page_size > 0) historyPage = ready.page_size;
  if (!store) return;
  store.clockSkew = (Number(ready.time) || Date.now()) - Date.now();
  try {
    await refreshList(); // cursors for conversations new to this page; receipts and names missed while away
  } catch {
    // the socket may still work; sync from what we have
  }
}

/** Connected and synced (the SDK re-sends what was not acknowledged): what the page shows catches up. */
function onConnected() {
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
        myStore.dropCursor(conv.id);
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

/** A message from the SDK: once each, in seq order per conversation, never one this page sent (that is an ack). */
function onMessage({ message }) {
  if (organize) organize.onMessage(message); // organize: hook (pin notices)
  const known = store.conversations.get(message.conversation_id);
  if (!message.conversation_id.startsWith("u:") && (!known || (!known.known && !known.name))) refreshListSoon();
  store.ingest(message);
}

/** A socket request that fails at once while disconnected (Disconnected) rather than waiting for the next ready. */
function request(frame) {
  const conn = client?.connection;
  return conn && conn.ready ? conn.request(frame) : Promise.reject(new Disconnected());
}

const OFFLINE = { request: () => Promise.reject(new Disconnected()), send: () => false, ready: false };

function onTyping(frame) {
  store.setTyping(frame.conversation_id, frame.user_id, Date.now() + TYPING_SHOW_MS);
  setTimeout(() => {
    if (!store) return;
    store.changed.list = true;
    store.changed.header = true;
    render();
  }, TYPING_SHOW_MS + 50);
}

// ------------------------------------------------------------------------------------------------ reads

function markReadSoon() {
  if (readTimer) return;
  readTimer = setTimeout(() => {
    readTimer = null;
    markRead();
  }, 250);
}

/** Read receipt for the open conversation, when it is actually on screen. */
function markRead() {
  if (!store || !client?.connected || !activeId || document.visibilityState !== "visible" || !view.chatVisible()) return;
  const conv = store.conversations.get(activeId);
  if (!conv) return;
  let top = 0;
  for (const seq of conv.messages.keys()) if (seq > top) top = seq;
  if (top <= conv.readSeq) return;
  const previous = conv.readSeq;
  conv.readSeq = top;
  if (top >= conv.lastSeq) conv.unreadMentions = 0;
  store.touch(conv.id);
  request({ t: "read", conversation_id: conv.id, seq: top }).catch(() => {
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
  if (organize && activeId) organize.sent(activeId); // organize: hook (the draft is sent)
  const conv = activeConversation();
  if (conv) sendBody(extras.compose(conv, text)); // a reply, mentions: reactions.js
}

function activeConversation() {
  return activeId && store ? store.conversations.get(activeId) || null : null;
}

function sendBody(body) {
  const conv = activeId ? store.conversations.get(activeId) : null;
  if (!conv) return;
  const item = { conversation_id: conv.id, client_msg_id: newClientMsgId(), body, ts: store.serverNow() };
  store.addPending(item);
  // The SDK keeps it until its ack (also across reloads), re-sending it with this id; the ack event shows it sent.
  const target = conv.kind === "group" ? { groupId: conv.groupId } : { to: conv.peerId };
  client.send({ ...target, body, clientMsgId: item.client_msg_id }).catch(() => {}); // failures: sendFailed
}

// Files: uploaded first (with progress under the message box), then sent as a message naming the upload.
async function attach(files) {
  for (const file of files) {
    const conversation = activeId;
    try {
      view.uploadProgress(`Sending ${file.name}…`);
      const info = await uploadFile(client, file, (sent, total) => {
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
    const info = await uploadFile(client, file);
    sendBody(bodyFor(info, { voice }));
  } catch (exc) {
    view.toast(`Voice note not sent: ${exc.message}`);
  } finally {
    view.uploadProgress(null);
  }
}

function typing() {
  if (!client || !activeId) return;
  const now = Date.now();
  if (now - (lastTypingSent.get(activeId) || 0) < TYPING_SEND_EVERY_MS) return;
  if (client.typing(activeId)) lastTypingSent.set(activeId, now);
}

// ------------------------------------------------------------------------------------------------ conversations

function openConversation(id) {
  if (!store) return;
  activeId = id;
  if (id) sessionStorage.setItem("pica.active", id);
  else sessionStorage.removeItem("pica.active");
  view.setChatOpen(Boolean(id));
  extras?.switched(id);
  const conv = id ? store.conversation(id) : null;
  if (organize) organize.opened(conv); // organize: hook (drafts, pins, the unread mark)
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
  if (!client?.connected) return; // after the next ready
  conv.historyState = "loading";
  store.touch(conv.id, { list: false });
  try {
    const page = await request({ t: "history", conversation_id: conv.id, limit: historyPage });
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
  if (!conv || conv.historyState !== "partial" || !client?.connected) return;
  const before = store.oldestLoaded(conv);
  if (!before || before <= 1) {
    conv.historyState = "complete";
    store.touch(conv.id, { list: false });
    return;
  }
  conv.historyState = "loading";
  store.touch(conv.id, { list: false });
  try {
    const page = await request({ t: "history", conversation_id: conv.id, before, limit: historyPage });
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
  const items = organize ? organize.menuItems(conv, msg) : []; // organize: hook (forward, pin)
  const mine = msg.sender === store.me.user_id;
  const gone = msg.body.recalled || msg.body.deleted;
  if (typeof msg.body.text === "string" && !gone) {
    items.push({ id: "copy", label: "Copy text", run: () => navigator.clipboard?.writeText(msg.body.text).catch(() => {}) });
  }
  if (mine && !gone && typeof msg.body.text === "string") items.push({ id: "edit", label: "Edit", run: () => editMessage(conv, msg) });
  if (mine && !gone && store.serverNow() - msg.ts < RECALL_WINDOW_MS) {
    items.push({ id: "recall", label: "Recall", danger: true, run: () => recallMessage(conv, msg) });
  }
  if (!gone) {
    items.push({ id: "reply", label: "Reply", run: () => extras.startReply(conv, msg) });
    items.push({ id: "react", label: "React…", run: () => pickReaction(conv, msg) });
    if (conv.kind === "group" && !msg.body.thread) {
      items.push({ id: "thread", label: "Reply in thread", run: () => extras.openThread(conv, msg.seq) });
    }
  }
  if (!msg.body.deleted) items.push({ id: "delete", label: "Delete for me", danger: true, run: () => deleteForMe(conv, msg) });
  return items;
}

/** Reactions: one of a few common emoji, or any other typed in (docs/protocol.md section 28). */
function pickReaction(conv, msg) {
  view.form({
    title: "React",
    description: `${QUICK_EMOJI.join(" ")}, or any other emoji`,
    fields: [{ name: "emoji", label: "Emoji", value: QUICK_EMOJI[0] }],
    submit: "React",
    onSubmit: async ({ emoji }) => {
      const mine = (msg.body.reactions?.[emoji.trim()] || []).includes(store.me.user_id);
      await react(msg.seq, emoji.trim(), mine, conv).catch((exc) => { throw new Error(errorText(exc)); });
    },
  });
}

/** Add my reaction, or take it back (`mine`): the SDK re-sends it until acked, and its ack event applies it. */
async function react(seq, emoji, mine, conv = activeConversation()) {
  if (!conv || !client) return;
  await extras.react(conv, seq, emoji, mine);
}

async function removePreview(seq) {
  const conv = activeId ? store.conversations.get(activeId) : null;
  if (!conv || !client) return;
  try {
    await client.removePreview(conv.id, seq); // its ack event applies it
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
        await client.edit(conv.id, msg.seq, text); // its ack event applies it
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
        await client.recall(conv.id, msg.seq); // its ack event applies it
      } catch (exc) {
        throw new Error(errorText(exc));
      }
    },
  });
}

async function deleteForMe(conv, msg) {
  try {
    await request({ t: "delete", conversation_id: conv.id, seq: msg.seq });
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
