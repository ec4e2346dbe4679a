"""How many chat sockets each person and each client address holds on this process."""

from __future__ import annotations

import collections


class Connections:
    def __init__(self, per_user: int, per_address: int) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self._users: collections.Counter[str] = collections.Counter()
        self._addresses: collections.Counter[str] = collections.Counter()

    def admit(self, user_id: str, address: str) -> str | None:
        """Count one more socket, or say why not (the close reason) and count nothing."""
        if self._users[user_id] >= self.per_user:
            return f"too many connections: at most {self.per_user} per person"
        if address and self._addresses[address] >= self.per_address:
            return f"too many connections from your address (at most {self.per_address})"
        self._users[user_id] += 1
        self._addresses[address] += 1
        return None

    def leave(self, user_id: str, address: str) -> None:
        for counter, k in ((self._users, user_id), (self._addresses, address)):
            counter[k] -= 1
            if counter[k] <= 0:
                del counter[k]
