"""The Standard Webhooks signature: ``v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, the key being
the base64-decoded part of a ``whsec_<base64>`` secret. Sans-I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_secret() -> str:
    """A fresh ``whsec_`` secret (24 random bytes, as the spec's libraries make them)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def webhook_id(endpoint_id: str, event_key: str) -> str:
    """A delivery's ``webhook-id``: the same for every attempt of one event (a job's key) to one endpoint."""
    return "msg_" + hashlib.sha256(f"{endpoint_id}\n{event_key}".encode()).hexdigest()[:32]


def signature(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(secret: str, webhook_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The request headers of one delivery attempt (the timestamp is the attempt's: receivers check its age)."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, webhook_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": "pica-webhooks",
    }
