// Web Push for the chat page (docs/push.md): registers the service worker (sw.js), and, when this server pushes to
// browsers, subscribes with the server's VAPID key (GET /v1/push/config) and registers the subscription for this
// session (POST /v1/devices). The browser asks the user first: the permission is requested on the user's first
// click on the page (browsers refuse or hide a request that no gesture led to). A session's end removes its device
// on the server; signing in again registers the same subscription for the new session.

let started = null;

export function startPush(call) {
  if (!started) started = start(call).catch(() => null);
  return started;
}

async function start(call) {
  if (!("serviceWorker" in navigator)) return null;
  const registration = await navigator.serviceWorker.register("/static/sw.js");
  const config = await call("/v1/push/config");
  if (!config.vapid_public_key || !("PushManager" in window) || !("Notification" in window)) return registration;
  const subscribe = () => register(call, registration, config.vapid_public_key).catch(() => {});
  if (Notification.permission === "granted") {
    await subscribe();
  } else if (Notification.permission === "default") {
    document.addEventListener("click", async () => {
      if ((await Notification.requestPermission()) === "granted") await subscribe();
    }, { once: true });
  }
  return registration;
}

async function register(call, registration, key) {
  const subscription = (await registration.pushManager.getSubscription())
    || (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: decode(key) }));
  await call("/v1/devices", { method: "POST", body: { platform: "webpush", subscription: subscription.toJSON() } });
}

function decode(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(base64url.length / 4) * 4, "=");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}
