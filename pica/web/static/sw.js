// The chat page's service worker: shows the pushes Pica sends to this browser (docs/push.md, "Web Push") and opens
// the page when one is clicked. A push is decrypted by the browser before it gets here: `event.data` is the JSON
// object of docs/push.md. The same push may arrive twice (sent again after a failure or a node's crash, under the
// same push_id): the repeat replaces the notification already shown, silently, instead of showing a second one.

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let push = {};
  try {
    push = event.data ? event.data.json() : {};
  } catch {
    push = {};
  }
  event.waitUntil(show(push));
});

async function show(push) {
  const tag = typeof push.tag === "string" ? push.tag : "pica";
  const shown = await self.registration.getNotifications({ tag });
  const repeat = shown.some((n) => n.data && n.data.push_id === push.push_id);
  // Every push must show a notification (userVisibleOnly): a repeat shows the same one again, without a sound.
  await self.registration.showNotification(push.title || "Pica", {
    body: push.body || "",
    tag,
    renotify: !repeat,
    icon: "/static/icon.svg",
    data: { push_id: push.push_id, conversation_id: push.conversation_id, seq: push.seq },
  });
  if (typeof push.badge === "number" && self.navigator.setAppBadge) {
    await self.navigator.setAppBadge(push.badge).catch(() => {});
  }
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const client of windows) {
      if ("focus" in client) return client.focus();
    }
    return self.clients.openWindow("/");
  })());
});
