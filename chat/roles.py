"""Who may do what in chat: one table, tested as a matrix."""

from __future__ import annotations

import enum

from core.problems import Forbidden
from core.tokens import Role


class Action(enum.StrEnum):
    SEND = "send"
    HEART = "heart"
    DELETE = "delete"
    BAN = "ban"
    SETTINGS = "settings"
    ANNOUNCE = "announce"
    BYPASS_SLOW_MODE = "bypass_slow_mode"
    BYPASS_RATE_LIMIT = "bypass_rate_limit"
    BYPASS_FREEZE = "bypass_freeze"


_ALL = frozenset(Role)
_STAFF = frozenset({Role.HOST, Role.COHOST, Role.MODERATOR})
_MODS = frozenset({Role.HOST, Role.MODERATOR})

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.SEND: _ALL,
    Action.HEART: _ALL,
    Action.DELETE: _MODS,
    Action.BAN: _MODS,
    Action.SETTINGS: _MODS,
    Action.ANNOUNCE: frozenset({Role.HOST}),
    Action.BYPASS_SLOW_MODE: _STAFF,
    Action.BYPASS_RATE_LIMIT: frozenset({Role.HOST}),
    Action.BYPASS_FREEZE: _STAFF,
}


# who may ban or time out whom: only someone of a higher rank. Nobody bans the host; the host
# alone bans co-hosts and moderators; moderators ban viewers.
RANK: dict[Role, int] = {Role.HOST: 3, Role.COHOST: 2, Role.MODERATOR: 2, Role.VIEWER: 1}


def outranks(actor: Role, target: Role) -> bool:
    return RANK[actor] > RANK[target]


def may(role: Role, action: Action) -> bool:
    return role in PERMISSIONS[action]


def require(role: Role, action: Action) -> None:
    if not may(role, action):
        raise Forbidden(f"role {role.value} may not {action.value.replace('_', ' ')}")
