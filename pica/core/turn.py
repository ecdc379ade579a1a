"""TURN credentials in coturn's shared-secret scheme ("TURN REST API", draft-uberti-behave-turn-rest-00, which
coturn implements as ``use-auth-secret`` with ``static-auth-secret``): the username is ``<expiry>:<user id>``
(expiry in seconds since the epoch) and the password is the base64 HMAC-SHA1 of the username under the shared
secret. The TURN server recomputes it and refuses a username whose expiry has passed; it never asks Pica."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from pica.config import TurnConfig
from pica.errors import NotConfigured


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    urls: tuple[str, ...]
    username: str
    credential: str
    ttl: int


def turn_credentials(config: TurnConfig, user_id: int, now_s: int) -> TurnCredentials:
    if not config.urls or not config.secret:
        raise NotConfigured("this server has no TURN server configured ([turn] urls and secret)")
    username = f"{now_s + config.ttl}:{user_id}"
    digest = hmac.new(config.secret.encode(), username.encode(), hashlib.sha1).digest()
    return TurnCredentials(config.urls, username, base64.b64encode(digest).decode(), config.ttl)
