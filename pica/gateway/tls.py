"""TLS for the node's listeners: one server context per listener, reloadable without dropping connections.

Policy: TLS 1.2 and 1.3 only; for 1.2, forward-secret AEAD suites (ECDHE/DHE with AES-GCM or ChaCha20-Poly1305), as
Mozilla's "intermediate" server configuration recommends (1.3's suites are all AEAD and not configurable here);
compression and renegotiation off (CPython's defaults for a server context).

Reload (SIGHUP, certificate renewal): a fresh context is built from the files and checked (a key that does not match
its certificate is refused, and the running one stays); then every new handshake is moved to it from the listener's
context by an SNI callback, which OpenSSL runs early in each handshake, whether or not the client sent a name. Open
connections keep the session they negotiated.
"""

from __future__ import annotations

import logging
import ssl
from typing import Final

from pica.config import TlsConfig

log = logging.getLogger(__name__)

TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!MD5:!DSS"


def _context(config: TlsConfig, *, client_certificates: bool) -> ssl.SSLContext:
    for path in (config.cert, config.key, config.client_ca if client_certificates else ""):
        if path:
            open(path, "rb").close()  # an OSError naming the file, which OpenSSL's own errors do not
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.load_cert_chain(config.cert, config.key)
    if client_certificates and config.client_ca:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=config.client_ca)
    return context


class _Listener:
    """The context a listener was created with, and the one its new handshakes use now."""

    def __init__(self, config: TlsConfig, client_certificates: bool) -> None:
        self._client_certificates = client_certificates
        self.context = _context(config, client_certificates=client_certificates)
        self._current = self.context
        self.context.sni_callback = self._pick

    def _pick(self, connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
        if self._current is not context:
            connection.context = self._current

    def prepare(self, config: TlsConfig) -> ssl.SSLContext:
        fresh = _context(config, client_certificates=self._client_certificates)
        fresh.sni_callback = self._pick  # a handshake that lands on it directly stays on it
        return fresh

    def use(self, context: ssl.SSLContext) -> None:
        self._current = context


class ServerTls:
    """The TLS contexts of the HTTP (and WebSocket) listener and of the framed TCP gateway."""

    def __init__(self, config: TlsConfig) -> None:
        self._config = config
        self._http = _Listener(config, client_certificates=False)
        self._tcp = _Listener(config, client_certificates=True)

    @property
    def http(self) -> ssl.SSLContext:
        return self._http.context

    @property
    def tcp(self) -> ssl.SSLContext:
        return self._tcp.context

    @property
    def handshake_timeout(self) -> float:
        return self._config.handshake_timeout

    def reload(self) -> bool:
        """Read the certificate, key and client CAs again; new handshakes use them. On a bad file (missing, not PEM,
        a key of another certificate) the running ones stay and False is answered (the error is logged)."""
        try:  # both built before either is used: the listeners never serve two different certificates
            http, tcp = self._http.prepare(self._config), self._tcp.prepare(self._config)
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS reload failed, the current certificate stays: %s", exc)
            return False
        self._http.use(http)
        self._tcp.use(tcp)
        log.info("TLS certificate reloaded", extra={"cert": self._config.cert})
        return True


def server_tls(config: TlsConfig) -> ServerTls | None:
    """The listeners' TLS, or None when ``tls.cert`` is not set (plaintext)."""
    return ServerTls(config) if config.cert else None
