"""Which groups this node holds a connected member of: the table behind the per-group bus channels. Pure logic.

A node subscribes to ``{prefix}g:{conversation_id}`` while this index holds at least one local user of the group;
the methods that change it return the groups that gained their first or lost their last local member, and the
caller turns those into SUBSCRIBE / UNSUBSCRIBE (:class:`pica.cluster.routing.ClusterFanout`).

"Local" users are those with a device connected here or about to be (``before_ready``). A user enters the index in
two ways: ``load`` with their group list read from the store when their first device connects, and ``join`` when a
membership change adds them while they are here. Both may happen in either order for a user whose list is being
read while they are added; the union is right either way. ``loaded`` tells whether the store's list was read.
"""

from __future__ import annotations

from collections.abc import Iterable


class GroupIndex:
    def __init__(self) -> None:
        self._groups_of: dict[int, set[str]] = {}
        """local user id -> conversation ids of their groups."""
        self._members: dict[str, set[int]] = {}
        """conversation id -> local user ids; never an empty set (a group without local members is absent)."""
        self._loaded: set[int] = set()

    def loaded(self, user_id: int) -> bool:
        """Whether the user's group list was read from the store (and not dropped since)."""
        return user_id in self._loaded

    def holds(self, conversation_id: str) -> bool:
        """Whether some local user is a member of the group (its channel is wanted)."""
        return conversation_id in self._members

    def is_member(self, user_id: int, conversation_id: str) -> bool:
        return conversation_id in self._groups_of.get(user_id, ())

    def members(self, conversation_id: str) -> frozenset[int]:
        return frozenset(self._members.get(conversation_id, ()))

    def groups_of(self, user_id: int) -> frozenset[str]:
        return frozenset(self._groups_of.get(user_id, ()))

    @property
    def group_count(self) -> int:
        return len(self._members)

    def load(self, user_id: int, conversation_ids: Iterable[str]) -> list[str]:
        """The user's groups as read from the store. Returns the groups that gained their first local member."""
        self._loaded.add(user_id)
        return [cid for cid in conversation_ids if self.join(user_id, cid)]

    def join(self, user_id: int, conversation_id: str) -> bool:
        """The user is a member of the group. True if the group gained its first local member."""
        groups = self._groups_of.setdefault(user_id, set())
        if conversation_id in groups:
            return False
        groups.add(conversation_id)
        members = self._members.get(conversation_id)
        if members is None:
            self._members[conversation_id] = {user_id}
            return True
        members.add(user_id)
        return False

    def leave(self, user_id: int, conversation_id: str) -> bool:
        """The user left the group. True if the group lost its last local member."""
        groups = self._groups_of.get(user_id)
        if groups is None or conversation_id not in groups:
            return False
        groups.discard(conversation_id)
        return self._forget_member(user_id, conversation_id)

    def drop(self, user_id: int) -> list[str]:
        """The user's last local device left. Returns the groups that lost their last local member."""
        self._loaded.discard(user_id)
        groups = self._groups_of.pop(user_id, set())
        return [cid for cid in groups if self._forget_member(user_id, cid)]

    def _forget_member(self, user_id: int, conversation_id: str) -> bool:
        members = self._members.get(conversation_id)
        if members is None:
            return False
        members.discard(user_id)
        if members:
            return False
        del self._members[conversation_id]
        return True
