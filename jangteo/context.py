"""The app's parts, built once by the lifespan and handed to the packages' routes."""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from redis.asyncio import Redis
from starlette.requests import HTTPConnection

from chat.hub import ChatHub
from chat.store import ChatStore
from commerce.catalog import Catalog
from commerce.fx import FxRates
from commerce.orders import Orders
from core.broadcasts import BroadcastStore
from core.config import Settings
from core.problems import Unauthorized
from core.redislimit import RedisBuckets
from core.revocation import Revocations, Verifier
from core.tokens import TokenSigner
from core.web import bearer
from stream.hub import MediaHub


@dataclasses.dataclass
class AppContext:
    settings: Settings
    redis: Redis
    store: BroadcastStore
    signer: TokenSigner
    hub: MediaHub
    chat: ChatHub
    chat_store: ChatStore
    catalog: Catalog
    orders: Orders
    buckets: RedisBuckets
    revocations: Revocations
    verifier: Verifier
    fx: FxRates = dataclasses.field(default_factory=lambda: FxRates(None))
    node_id: str = ""  # this node among the deployment's (core/nodes.py)


def ctx_of(app: Any) -> AppContext:
    """The running app's context (set by its lifespan)."""
    context: AppContext = app.state.ctx
    return context


def ctx(conn: HTTPConnection) -> AppContext:
    return ctx_of(conn.app)


def admin_key_matches(conn: HTTPConnection, key: str) -> bool:
    token = bearer(conn)
    return bool(token and key and hmac.compare_digest(token.encode(), key.encode()))


def require_admin(conn: HTTPConnection) -> None:
    if bearer(conn) is None:
        raise Unauthorized("send the admin key as a Bearer token")
    if not admin_key_matches(conn, ctx(conn).settings.admin_key):
        raise Unauthorized("the admin key does not match", code="bad_token")
