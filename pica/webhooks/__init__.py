"""Webhooks: events POSTed to other systems through the job queue, and the synchronous before-send hook.

- :mod:`~pica.webhooks.signing`: the Standard Webhooks signature (sans-I/O).
- :mod:`~pica.webhooks.ssrf`: which addresses an endpoint registered through the admin command may reach, checked at
  registration and again at connect time (a resolver that drops refused addresses, so a DNS answer that changed
  since registration cannot lead inside).
- :mod:`~pica.webhooks.endpoints`: the endpoints in force (the TOML file's and the store's), and the job rules they
  make for the store's transactions.
- :mod:`~pica.webhooks.delivery`: the job handler that delivers one event to one endpoint.
- :mod:`~pica.webhooks.before_send`: the hook asked before a message is stored (the core's ``BeforeSend`` port).

The payloads and headers are specified in docs/webhooks.md.
"""
