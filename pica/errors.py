"""One exception hierarchy for all of Pica.

Every error a client can see carries a stable wire ``code`` (used in protocol ``error`` frames and in HTTP JSON
bodies), an HTTP status, and whether retrying the same request can help. Driver exceptions (sqlite3, asyncpg,
redis) are wrapped at the store/cluster boundary; only these classes reach the wire::

    PicaError
    ├── BadRequest                 400  bad_request
    │   ├── InvalidFrame           400  invalid_frame
    │   ├── UnknownFrame           400  unknown_frame
    │   ├── FrameTooLarge          413  frame_too_large
    │   ├── InvalidUsername        400  invalid_username
    │   ├── WeakPassword           400  weak_password
    │   └── UnsupportedVersion     400  unsupported_version
    ├── Unauthenticated            401  unauthenticated
    │   ├── InvalidCredentials     401  invalid_credentials
    │   ├── InvalidToken           401  invalid_token
    │   ├── TokenExpired           401  token_expired
    │   ├── SessionEnded           401  session_ended
    │   └── Banned                 403  banned
    ├── PayloadTooLarge            413  payload_too_large
    ├── MethodNotAllowed           405  method_not_allowed
    ├── Forbidden                  403  forbidden
    │   └── RejectedByPolicy       403  rejected_by_policy
    ├── NotFound                   404  not_found
    │   ├── UserNotFound           404  user_not_found
    │   ├── ConversationNotFound   404  conversation_not_found
    │   ├── GroupNotFound          404  group_not_found
    │   ├── MessageNotFound        404  message_not_found
    │   └── CallNotFound           404  call_not_found
    ├── Conflict                   409  conflict
    │   ├── UsernameTaken          409  username_taken
    │   ├── IdempotencyConflict    409  idempotency_conflict
    │   ├── TooManySessions        409  too_many_sessions
    │   ├── Busy                   409  busy
    │   └── CallStateConflict      409  call_state
    ├── RateLimited                429  rate_limited        (retryable)
    ├── Unavailable                503  unavailable         (retryable)
    │   ├── PolicyUnavailable      503  policy_unavailable  (retryable)
    │   └── StoreUnavailable       503  store_unavailable   (retryable)
    │       └── MigrationError     503  store_unavailable   (only when a store is opened; never on the wire)
    ├── NotConfigured              501  not_configured
    └── InternalError              500  internal            (retryable)
"""

from __future__ import annotations

import math
from typing import ClassVar


class PicaError(Exception):
    """Root of every error Pica raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message()
        super().__init__(self.message)

    @classmethod
    def default_message(cls) -> str:
        return cls.code.replace("_", " ")

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"code": self.code, "message": self.message}
        if self.retryable:
            body["retryable"] = True
        return body


class BadRequest(PicaError):
    code = "bad_request"
    http_status = 400


class InvalidFrame(BadRequest):
    code = "invalid_frame"


class UnknownFrame(BadRequest):
    code = "unknown_frame"


class FrameTooLarge(BadRequest):
    code = "frame_too_large"
    http_status = 413


class InvalidUsername(BadRequest):
    code = "invalid_username"


class WeakPassword(BadRequest):
    code = "weak_password"


class UnsupportedVersion(BadRequest):
    code = "unsupported_version"


class PayloadTooLarge(PicaError):
    code = "payload_too_large"
    http_status = 413


class QuotaExceeded(PayloadTooLarge):
    """An upload that would take the user's files past ``media.quota_bytes``."""

    code = "quota_exceeded"


class MethodNotAllowed(PicaError):
    code = "method_not_allowed"
    http_status = 405


class Unauthenticated(PicaError):
    code = "unauthenticated"
    http_status = 401


class InvalidCredentials(Unauthenticated):
    code = "invalid_credentials"


class InvalidToken(Unauthenticated):
    code = "invalid_token"


class TokenExpired(Unauthenticated):
    code = "token_expired"


class SessionEnded(Unauthenticated):
    """The token's session was ended (logout, revoked from another device, password change, a reused refresh token,
    or lapsed): only a new login helps."""

    code = "session_ended"


class Banned(Unauthenticated):
    """The account was banned by an administrator (``pica user ban``). A refusal of credentials like its parent,
    so a socket authenticating with a banned user's token closes with 4501 (reconnecting unchanged fails again),
    but HTTP 403: the credentials are right, the account may not use them."""

    code = "banned"
    http_status = 403


class Forbidden(PicaError):
    code = "forbidden"
    http_status = 403


class RejectedByPolicy(Forbidden):
    """The before-send hook vetoed the message; its reason, if it gave one, is the message."""

    code = "rejected_by_policy"


class NotFound(PicaError):
    code = "not_found"
    http_status = 404


class UserNotFound(NotFound):
    code = "user_not_found"


class ConversationNotFound(NotFound):
    """Raised both for a conversation that does not exist and for one the caller is not in: the two must be
    indistinguishable so that ids cannot be probed."""

    code = "conversation_not_found"


class GroupNotFound(NotFound):
    """For a group that does not exist and for one the caller is not a member of, alike."""

    code = "group_not_found"


class MessageNotFound(NotFound):
    code = "message_not_found"


class FileNotFound(NotFound):
    """For a file that does not exist and for one the caller may not read, alike (ids cannot be probed)."""

    code = "file_not_found"
class CallNotFound(NotFound):
    """No call of that id in which the caller takes part is in progress (on this node): never was, or is over."""

    code = "call_not_found"


class Conflict(PicaError):
    code = "conflict"
    http_status = 409


class UsernameTaken(Conflict):
    code = "username_taken"


class IdempotencyConflict(Conflict):
    """A ``client_msg_id`` the sender used before, for another message (another destination or body): a retry must
    repeat its request exactly; a new message needs a new id."""

    code = "idempotency_conflict"


class TooManySessions(Conflict):
    """The user holds ``limits.max_sessions_per_user`` sessions on this node already: sent to the session closed to
    make room (``session_overflow = "oldest"``) or to the one refused (``"refuse"``), before close 4505."""

    code = "too_many_sessions"


class TooManyDevices(Conflict):
    """The user has ``push.max_devices_per_user`` push targets registered already (``POST /v1/devices``)."""

    code = "too_many_devices"


class TooManyPins(Conflict):
    """The conversation has ``conversations.max_pins`` pinned messages already: unpin one first."""

    code = "too_many_pins"

class Busy(Conflict):
    """One of the two users is in a call already (ringing, or answered): one call per user at a time."""

    code = "busy"


class CallStateConflict(Conflict):
    """A call frame this party may not send in the call's present state (accepting a call answered on another
    device, hanging up one not answered yet, the caller accepting)."""

    code = "call_state"


class NotConfigured(PicaError):
    """A feature the operator has not configured (``GET /v1/turn`` without ``[turn]``): retrying will not help."""

    code = "not_configured"
    http_status = 501


class RateLimited(PicaError):
    """Too many requests: ``retry_after`` seconds from now the same request will be accepted (HTTP ``Retry-After``,
    and ``retry_after`` in the JSON body and in the ``error`` frame)."""

    code = "rate_limited"
    http_status = 429
    retryable = True

    def __init__(self, message: str | None = None, retry_after: float = 1.0, limit: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.limit = limit
        """The configuration key of the limit that refused (``rates.sends_per_user``), for /metrics; not sent."""

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "retry_after": self.retry_after}

    @property
    def retry_after_header(self) -> str:
        """The HTTP ``Retry-After`` value: whole seconds (RFC 9110 allows no fraction), rounded up, never 0."""
        return str(max(1, math.ceil(self.retry_after)))


class Unavailable(PicaError):
    code = "unavailable"
    http_status = 503
    retryable = True


class PolicyUnavailable(Unavailable):
    """The before-send hook could not be asked (timeout, error) and ``before_send.on_failure`` is "reject"."""

    code = "policy_unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class MigrationError(StoreUnavailable):
    """The database's schema and this code's migrations (pica/store/schema.py) do not fit together: a migration file
    changed after it was applied, the database is at a version newer than this code knows, its record of applied
    versions is incomplete, or the migration files themselves are inconsistent. Raised when a store is opened (by a
    node or by ``pica migrate``), so it never reaches a client; the message names the version and the file. Its
    parent keeps callers that handle an unavailable store (print it, exit non-zero) handling this one too; retrying
    does not help until an operator acts."""


class InternalError(PicaError):
    code = "internal"
    http_status = 500
    retryable = True


class StartupError(Exception):
    """A node cannot start for a reason its operator must fix (a port in use, a data directory that cannot be
    written, a certificate that does not load); the message says which and why, in one line. Not a PicaError: it
    never reaches a client."""
