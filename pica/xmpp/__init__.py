"""The XMPP client-to-server gateway (docs/protocol.md, section 31)."""

from pica.xmpp.gateway import XmppConnection, start_xmpp_server

__all__ = ["XmppConnection", "start_xmpp_server"]
