"""The before-send hook (``[before_send]``): asked, synchronously and before the store sees the message, whether a
message may be stored as sent, rewritten, or not at all (moderation).

Request: a POST of ``{"type": "message.before_send", "timestamp", "data": {conversation_id, sender, to | group_id,
client_msg_id, body}}``, signed like a webhook (its ``webhook-id`` is ``bs_<sender>_<client_msg_id hash>``, the same
for a retry of the same message). Answer: 2xx with ``{"action": "allow"}``, ``{"action": "reject", "reason": "..."}``
or ``{"action": "rewrite", "body": {...}}``. A timeout (``before_send.timeout``), a failed connection, another
status or an answer that is not one of these is a failure, and ``before_send.on_failure`` decides: "allow" stores
the message as sent (fail open), "reject" refuses it with the retryable ``policy_unavailable`` (fail closed).

The hook's URL is the operator's (configuration), so it is not SSRF-checked.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import msgspec

from pica.config import BeforeSendConfig
from pica.errors import PolicyUnavailable, RejectedByPolicy
from pica.protocol.ids import direct_peer, group_id_of
from pica.webhooks import signing

log = logging.getLogger(__name__)

_encode: Final = msgspec.json.Encoder().encode


class Answer(msgspec.Struct, forbid_unknown_fields=False):
    action: str
    reason: str = ""
    body: dict[str, Any] | None = None


_decode: Final = msgspec.json.Decoder(Answer).decode


class BeforeSendHook:
    def __init__(self, config: BeforeSendConfig) -> None:
        self._config = config
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def review(self, sender: int, conversation_id: str, client_msg_id: str,
                     body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = await self._ask(sender, conversation_id, client_msg_id, body)
        except (TimeoutError, aiohttp.ClientError, OSError, msgspec.ValidationError, msgspec.DecodeError,
                _Unusable) as exc:
            log.warning("before-send hook failed: %s", f"{type(exc).__name__}: {exc}"[:300],
                        extra={"on_failure": self._config.on_failure})
            if self._config.on_failure == "reject":
                raise PolicyUnavailable("the message could not be checked; retry later") from exc
            return body
        if answer.action == "allow":
            return body
        if answer.action == "reject":
            raise RejectedByPolicy(answer.reason[:200] or None)
        assert answer.body is not None
        return answer.body

    async def _ask(self, sender: int, conversation_id: str, client_msg_id: str, body: dict[str, Any]) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.timeout))
        data: dict[str, Any] = {"conversation_id": conversation_id, "sender": sender}
        group = group_id_of(conversation_id)
        if group is not None:
            data["group_id"] = group
        else:
            data["to"] = direct_peer(conversation_id, sender)
        data.update(client_msg_id=client_msg_id, body=body)
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        payload = _encode({"type": "message.before_send", "timestamp": stamp, "data": data})
        hook_id = f"bs_{sender}_{hashlib.sha256(client_msg_id.encode()).hexdigest()[:16]}"
        headers = signing.headers(self._config.secret, hook_id, int(now), payload)
        async with self._session.post(self._config.url, data=payload, headers=headers,
                                      allow_redirects=False) as response:
            raw = await response.content.read(self._config.max_response_bytes + 1)
            if not 200 <= response.status < 300:
                raise _Unusable(f"HTTP {response.status}")
        if len(raw) > self._config.max_response_bytes:
            raise _Unusable("answer too large")
        answer = _decode(raw)
        if answer.action not in ("allow", "reject", "rewrite") or (answer.action == "rewrite" and answer.body is None):
            raise _Unusable(f"unknown answer {answer.action!r}")
        return answer


class _Unusable(Exception):
    """The hook answered, but not something it may answer."""
