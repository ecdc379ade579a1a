"""Push notifications to devices without a live connection (docs/push.md): a kind of job of the durable queue.

- :mod:`~pica.push.rules`: sans-I/O: who is pushed to (delivered cursor, membership, mute, mention-only), what the
  push says (title, preview, privacy mode, badge, collapse key, push id), and the job's verdict.
- :mod:`~pica.push.sender`: the ``push`` job handler and the providers' factory.
- :mod:`~pica.push.apns`, :mod:`~pica.push.fcm`, :mod:`~pica.push.webpush`: one push to one device on each platform
  (APNs over HTTP/2 with a provider token, FCM HTTP v1 with a service account, Web Push with VAPID and RFC 8291).
"""
