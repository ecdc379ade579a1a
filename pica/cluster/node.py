"""What the registry knows about a node: where clients reach it and how loaded it is."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pica.core.placement import NodeAddress

_FIELDS = ("node_id", "http", "ws", "tcp", "connections", "started_at")
_INT_FIELDS = frozenset({"connections", "started_at"})


@dataclass(frozen=True, slots=True)
class NodeInfo(NodeAddress):
    """A :class:`NodeAddress` (so dispatch can rank it directly) plus when the node started, in ms since the epoch.

    Stored as the Redis hash ``{prefix}node:{node_id}``, every value a string (Redis has no other kind).
    """

    started_at: int = 0

    def to_fields(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in _FIELDS}

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes] | Mapping[str, str]) -> NodeInfo:
        """Inverse of :meth:`to_fields`; ``ValueError`` on a missing or malformed field (a hash written by an
        incompatible version, or one that expired between two reads)."""
        text = {_text(key): _text(value) for key, value in fields.items()}
        try:
            values: dict[str, str | int] = {
                name: int(text[name]) if name in _INT_FIELDS else text[name] for name in _FIELDS
            }
        except KeyError as exc:
            raise ValueError(f"node hash lacks {exc.args[0]!r}") from None
        return cls(**values)  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(self.to_fields(), separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> NodeInfo:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("node JSON must be an object")
        return cls.from_fields({str(k): str(v) for k, v in raw.items()})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
