"""What the commerce routes work on: the parts of the app they are handed (the app's context
satisfies it), so commerce knows nothing of the app or of the media path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis

from core.broadcasts import BroadcastStore
from core.config import Settings
from core.revocation import Verifier

from .catalog import Catalog
from .fx import FxRates
from .orders import Orders


class Stills(Protocol):
    """Where a flash product's picture comes from: the live composed frame, if any."""

    def still(self, bid: str) -> Callable[[], Any] | None: ...


class ShopApp(Protocol):
    settings: Settings
    redis: Redis
    store: BroadcastStore
    catalog: Catalog
    orders: Orders
    verifier: Verifier
    fx: FxRates

    @property
    def hub(self) -> Stills: ...
