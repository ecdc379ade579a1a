"""What a recall does to the links of the message it recalls (docs/protocol.md section 28): the replies quoting it
read "recalled" and its mentions stop counting as unread. Run inside the recall's transaction
(:func:`pica.store.messages.apply_event`), so no quoted text survives it."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from pica.store.reaction_rules import recalled_quote
from pica.store.txn import Dialect, Read, Statement, Txn, Write

_json_encode: Final = msgspec.json.Encoder().encode
_json_decode_body: Final = msgspec.json.Decoder(dict[str, Any]).decode


def on_recall(conversation_id: str, target_seq: int) -> Txn[None]:
    rows = yield Read("replies_quoting", (conversation_id, target_seq))
    quotes = [(row[0], recalled_quote(_json_decode_body(row[1]))) for row in rows]
    if quotes:
        yield Write("replace_bodies", ([conversation_id] * len(quotes), [seq for seq, _ in quotes],
                                       [_json_encode(body) for _, body in quotes]))
    yield Write("drop_mentions", ([conversation_id], [target_seq]))


_REPLIES_QUOTING: Final = (
    "SELECT m.seq, m.body FROM replies r JOIN messages m ON m.conversation_id = r.conversation_id AND m.seq = r.seq"
    " WHERE r.conversation_id = {c} AND r.target_seq = {s} AND m.state <> 'recalled'"
)

SQLITE: Final[Dialect] = {
    "replies_quoting": Statement(_REPLIES_QUOTING.format(c="?1", s="?2")),
    "drop_mentions": Statement("DELETE FROM mentions WHERE conversation_id = ?1 AND seq = ?2"),
}

POSTGRES: Final[Dialect] = {
    "replies_quoting": Statement(_REPLIES_QUOTING.format(c="$1", s="$2")),
    "drop_mentions": Statement(
        "DELETE FROM mentions x USING unnest($1::text[], $2::bigint[]) AS k(conversation_id, seq)"
        " WHERE x.conversation_id = k.conversation_id AND x.seq = k.seq"
    ),
}
