"""Who may see a user's presence: the one rule, pure, applied to presence queries and to the ``presence`` frames
pushed on every change (both go through :class:`pica.core.social.SocialService`, on a single node and in a cluster
alike, where the cluster only decides *when* a user comes online or goes offline).

The store supplies the facts: who is related to the user at all (accepted contacts and 1:1 peers, minus those the
user blocked: the audience of D13 in docs/architecture.md) and the user's ``presence`` setting. The setting narrows
that audience; it never widens it beyond people the user has a relation with.
"""

from __future__ import annotations

from collections.abc import Iterable

from pica.store.base import PRIVACY_LEVELS, PresenceAudience, PresenceRecord

__all__ = ["PRIVACY_LEVELS", "presence_visible", "viewers", "visible_records"]


def presence_visible(setting: str, *, contact: bool) -> bool:
    """May a user related to U (and not blocked by U) see U's online state and last seen, under U's ``presence``
    setting? ``contact``: the two are accepted contacts (a 1:1 peer alone is not). An unknown value reads as
    "nobody": a setting the code does not know hides rather than shows."""
    return setting == "everyone" or (setting == "contacts" and contact)


def viewers(audience: PresenceAudience) -> list[int]:
    """Who is told of the user's presence changes."""
    return [v.user_id for v in audience.viewers if presence_visible(audience.presence, contact=v.contact)]


def visible_records(viewer: int, records: Iterable[PresenceRecord]) -> list[PresenceRecord]:
    """The records a presence query answers with: everyone sees themself."""
    return [r for r in records if r.user_id == viewer or presence_visible(r.presence, contact=r.contact)]
