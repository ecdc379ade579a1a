"""Group permission rules and notice bodies, shared by every store backend.

Pure functions: a backend reads the roles it needs inside its transaction (the state being changed), asks these
functions, and writes what they allow. Keeping the rules here, once, means SQLite and PostgreSQL cannot drift apart
on who may do what (the contract suite checks the outcome on both). Each function raises the domain error the
protocol documents (docs/protocol.md, "Groups"), in the order the checks are listed there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pica.errors import BadRequest, Forbidden, GroupNotFound, UserNotFound
from pica.protocol.text import has_control_chars

RANK: Final = {"owner": 3, "admin": 2, "member": 1}
MAX_NAME: Final = 100
NOTICE_LIST_LIMIT: Final = 100
"""A notice lists the user ids it concerns up to this many; a bigger change gives only the count."""

Event = dict[str, Any]


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise BadRequest(f"a group name is 1-{MAX_NAME} characters")
    if has_control_chars(name):
        raise BadRequest("a group name must not contain control characters")
    return name


def listed(user_ids: list[int] | tuple[int, ...]) -> dict[str, Any]:
    if len(user_ids) <= NOTICE_LIST_LIMIT:
        return {"user_ids": list(user_ids)}
    return {"count": len(user_ids)}


def plan_create(owner: int, name: str, members: Iterable[int], max_members: int) -> tuple[str, tuple[int, ...], Event]:
    """A new group's name, its members (the owner first, then the others in request order, once each) and the
    notice."""
    name = check_name(name)
    everyone = tuple(dict.fromkeys([owner, *members]))
    if len(everyone) > max_members:
        raise BadRequest(f"a group has at most {max_members} members")
    return name, everyone, {"event": "created", "by": owner, "name": name, **listed(everyone)}


def check_users_found(wanted: int, found: int) -> None:
    """``found`` of the ``wanted`` (distinct) users exist: all of them must."""
    if found != wanted:
        raise UserNotFound("some of these users do not exist")


def member_roles(user_ids: Iterable[int], found: Mapping[int, str]) -> dict[int, str]:
    """The roles of the members an action names (``found``: the roles read), in the order named; naming a
    non-member is refused."""
    roles = {}
    for user_id in user_ids:
        if user_id not in found:
            raise BadRequest(f"user {user_id} is not a member of this group")
        roles[user_id] = found[user_id]
    return roles


def acting_role(actor_role: str | None, dissolved: bool) -> str:
    """The role of whoever acts on a group: a non-member gets the same refusal as for a group that does not exist
    (ids cannot be probed); nobody acts on a dissolved group."""
    if actor_role is None:
        raise GroupNotFound()
    if dissolved:
        raise Forbidden("the group was dissolved")
    return actor_role


def require_rank(actor_role: str, needed: str, what: str) -> None:
    if RANK[actor_role] < RANK[needed]:
        raise Forbidden(f"only the {'owner' if needed == 'owner' else 'owner or an admin'} can {what}")


def plan_add(actor: int, actor_role: str, requested: Iterable[int], existing: set[int],
             max_members: int) -> tuple[tuple[int, ...], Event]:
    """Who joins (the requested users not yet members, in request order) and the notice."""
    require_rank(actor_role, "admin", "add members")
    added = tuple(u for u in dict.fromkeys(requested) if u not in existing)
    if not added:
        raise BadRequest("everyone named is a member already")
    if len(existing) + len(added) > max_members:
        raise BadRequest(f"a group has at most {max_members} members")
    return added, {"event": "members_added", "by": actor, **listed(added)}


def plan_leave(kind: str, actor: int, actor_role: str, roles: Mapping[int, str]) -> tuple[tuple[int, ...], Event]:
    """``leave`` (the actor) or ``remove`` (``roles``: the targets' roles): who goes, and the notice."""
    for role in roles.values():
        if role == "owner":
            raise Forbidden("the owner cannot leave or be removed; transfer ownership or dissolve the group")
        if kind == "remove":
            require_rank(actor_role, "admin", "remove members")
            if RANK[role] >= RANK[actor_role]:
                raise Forbidden("you can only remove members ranked below you")
    removed = tuple(roles)
    return removed, {"event": "member_left" if kind == "leave" else "members_removed", "by": actor,
                     **listed(removed)}


def check_role_request(actor_role: str, role: str) -> None:
    require_rank(actor_role, "owner", "change roles")
    if role not in ("admin", "member"):
        raise BadRequest("role must be 'admin' or 'member'")


def plan_role(actor: int, role: str, roles: Mapping[int, str]) -> Event:
    if any(r == "owner" for r in roles.values()):
        raise Forbidden("use transfer to change the owner")
    return {"event": "role_changed", "by": actor, "role": role, **listed(tuple(roles))}


def check_transfer_request(actor_role: str, user_ids: tuple[int, ...]) -> None:
    require_rank(actor_role, "owner", "transfer ownership")
    if len(user_ids) != 1:
        raise BadRequest("name exactly one new owner")


def plan_transfer(actor: int, target: int) -> Event:
    if target == actor:
        raise BadRequest("you are the owner already")
    return {"event": "owner_changed", "by": actor, "user_id": target}


def plan_rename(actor: int, actor_role: str, name: str) -> tuple[str, Event]:
    require_rank(actor_role, "admin", "rename the group")
    name = check_name(name)
    return name, {"event": "renamed", "by": actor, "name": name}


def plan_mute(actor: int, actor_role: str, roles: Mapping[int, str], flag: bool) -> Event:
    """Mute or unmute members (``roles``: their roles; the rank check on the actor comes before reading them)."""
    if any(RANK[r] >= RANK[actor_role] for r in roles.values()):
        raise Forbidden("you can only mute members ranked below you")
    return {"event": "muted" if flag else "unmuted", "by": actor, **listed(tuple(roles))}


def plan_mute_all(actor: int, actor_role: str, flag: bool) -> Event:
    require_rank(actor_role, "admin", "mute the group")
    return {"event": "group_muted" if flag else "group_unmuted", "by": actor}


def plan_dissolve(actor: int, actor_role: str) -> Event:
    require_rank(actor_role, "owner", "dissolve the group")
    return {"event": "dissolved", "by": actor}
