"""The Starlette app: API, WHIP/WHEP, pages, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import socket
import ssl
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp

import chat.http
import commerce.http
import commerce.merchant
import commerce.numbers_http
import commerce.payments
import stream.http
from chat.connections import Connections
from chat.hub import ChatHub
from chat.presence import MediaPresence
from chat.store import ChatStore
from chat.ws import chat_socket
from commerce.catalog import Catalog
from commerce.chat_orders import try_order
from commerce.fastpath import OrderFastPath
from commerce.fx import FxRates
from commerce.orders import OrderRules, Orders
from commerce.stats import StatsSampler
from commerce.sweeper import Sweeper
from commerce.webhooks import Webhooks
from core import metrics
from core.broadcasts import BroadcastStore
from core.config import ConfigError, Settings, with_payment_secret
from core.malloc import trim_heap
from core.nodes import NodeRegistry, nodes
from core.origin import renew
from core.problems import NotFound, Unavailable
from core.redislimit import RedisBuckets
from core.redismux import RedisMux
from core.revocation import Revocations, Verifier
from core.tokens import TokenSigner
from core.web import bind_socket
from stream import cohosting
from stream.deliver.hls import http as hls_http
from stream.deliver.pool import WorkerPool
from stream.deliver.record import http as replay_http
from stream.deliver.relay import RelayServer, server_tls
from stream.deliver.rtc import configure_host_addresses
from stream.deliver.rtmp import http as restream_http
from stream.deliver.rtmp.destinations import DestinationStore
from stream.edge import TLS_SCHEME, find_origin
from stream.hub import MediaHub

from . import api, errors, guests, openapi
from .access import guard
from .api import NodeOrigins
from .context import AppContext, ctx_of, require_admin
from .drain import Drain
from .overlays import OverlayFeed
from .pages import NO_CACHE, SecurityHeaders, page

STATIC = Path(__file__).parent / "static"
ICONS = STATIC / "icons"  # drawn by scripts/make-icons
REDIS_CONNECTIONS = 64
CHAT_REDIS_CONNECTIONS = 512  # each broadcast's chat reader holds one in XREAD BLOCK
SEND_BUFFER = 64 * 1024
WS_MAX_SIZE = 4096  # chat frames over 4 KiB close the socket with 1009
# no permessage-deflate: one frame goes to a thousand sockets, compressing it a thousand times costs
# more than the bytes it saves
log = logging.getLogger(__name__)
# pages and their scripts change with the server: browsers revalidate instead of keeping old copies
_NO_CACHE = NO_CACHE  # (the pages' own: jangteo/pages.py)
# icons change with a redesign, not with the server: a week, then revalidated by ETag
_ICON_CACHE = {"Cache-Control": "public, max-age=604800"}
_ICON_TYPES = {".png": "image/png", ".ico": "image/x-icon"}
_ICON_NAME = re.compile(r"[a-z0-9][a-z0-9-]*\.(?:png|ico)")  # no dot-dot, slash, NUL or %


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text, for the operator (Bearer admin key; Prometheus sends it with
    ``authorization: {credentials: …}``). Read from counters: no work per viewer."""
    require_admin(request)
    return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")


async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(openapi.document())


async def healthz(request: Request) -> Response:
    """200 while this node takes new sessions (a load balancer's check); 503 ``draining`` while
    the operator drains it, ``not_ready`` without Redis."""
    drain: Drain | None = getattr(request.app.state, "drain", None)
    if drain is not None and drain.active:
        raise Unavailable("this node is draining", code="draining", headers={"Retry-After": "5"})
    await ctx_of(request.app).redis.ping()
    return JSONResponse({"ok": True})


async def static_file(request: Request) -> Response:
    name = request.path_params["name"]
    try:
        path = (STATIC / name).resolve()
        found = path.parent == STATIC.resolve() and path.is_file()
    except (ValueError, OSError):  # a NUL byte, a name the file system refuses (too long)
        found = False
    if not found:
        raise NotFound(f"no file {name[:100]!r}")
    return FileResponse(path, headers=_NO_CACHE)


async def icon_file(request: Request) -> Response:
    """A file of static/icons/ by its bare name: no other directory, no other kind of file."""
    name = request.path_params["name"]
    if _ICON_NAME.fullmatch(name):
        path = (ICONS / name).resolve()
        with contextlib.suppress(OSError):  # a name the file system refuses (too long)
            if path.parent == ICONS.resolve() and path.is_file():  # and not a link out of it
                return FileResponse(path, media_type=_ICON_TYPES[path.suffix],
                                    headers=_ICON_CACHE)  # fmt: skip
    raise NotFound(f"no icon {name[:100]!r}")


async def favicon(request: Request) -> Response:
    return FileResponse(ICONS / "favicon.ico", media_type="image/x-icon", headers=_ICON_CACHE)


async def web_manifest(request: Request) -> Response:
    """The web app manifest: name, colours and icons for "add to home screen"."""
    return FileResponse(
        STATIC / "manifest.webmanifest", media_type="application/manifest+json", headers=_NO_CACHE
    )


class NodeCORS(CORSMiddleware):
    """CORS for the configured origins and the deployment's own pages (api.NodeOrigins): a viewer
    page served by one node plays from another when its own stops answering."""

    def __init__(
        self, app: ASGIApp, node_origins: NodeOrigins, allow_origins: Collection[str] = (),
        allow_methods: Collection[str] = (), allow_headers: Collection[str] = (),
        expose_headers: Collection[str] = (), max_age: int = 600,
    ) -> None:  # fmt: skip
        super().__init__(app, allow_origins, allow_methods, allow_headers,
                         expose_headers=expose_headers, max_age=max_age)  # fmt: skip
        self.node_origins = node_origins

    def is_allowed_origin(self, origin: str) -> bool:
        return super().is_allowed_origin(origin) or origin in self.node_origins.allowed


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, with a modest send buffer that accepted connections inherit.

    Linux autotunes a socket's send buffer up to megabytes, which would let a chat client that
    stopped reading hide for minutes; with 64 KiB its frames back up into our bounded queue
    within seconds and it is cut (chat/hub.py). HTTP and chat frames are small; media is UDP.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when it is explicit
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _redis(url: str, connections: int, cluster: bool = False) -> Redis:
    """A client whose pool waits for a free connection instead of failing under a burst; with
    ``cluster``, a Redis Cluster client (any node's address; commands go to their slot's node)."""
    if cluster:
        client = RedisCluster.from_url(url, max_connections=connections)
        return cast(Redis, client)  # the same commands; every script stays in one slot
    pool = BlockingConnectionPool.from_url(
        url, max_connections=connections, timeout=10, health_check_interval=30
    )
    return Redis.from_pool(pool)  # the client owns the pool: aclose() disconnects it


def order_rules(settings: Settings) -> OrderRules:
    return OrderRules(
        hold_s=settings.hold_s,
        flash_hold_s=settings.flash_hold_s,
        cooldown_s=settings.hold_cooldown_s,
        open_per_buyer=settings.open_orders_per_buyer,
        open_per_address=settings.open_orders_per_address,
        unpaid_retention_s=settings.unpaid_retention_s,
        outbox=bool(settings.webhook_url),
        stats=settings.stats,
    )


async def _start(
    settings: Settings, parts: contextlib.AsyncExitStack, app: Starlette
) -> AppContext:
    """Build and start the app's parts; each is registered on ``parts`` as soon as it exists,
    so the lifespan closes exactly what was started (in reverse) whatever fails."""
    cluster = settings.redis_cluster
    redis = _redis(settings.redis_url or "", REDIS_CONNECTIONS, cluster)
    parts.push_async_callback(redis.aclose)
    mux = None
    if not cluster:  # one connection multiplexed to one server: not for a cluster's many
        mux = RedisMux(settings.redis_url or "")
        parts.push_async_callback(mux.aclose)
    # the chat readers block in XREAD: they get their own connection pool
    chat_redis = _redis(settings.redis_url or "", CHAT_REDIS_CONNECTIONS, cluster)
    parts.push_async_callback(chat_redis.aclose)
    loop = asyncio.get_running_loop()
    metrics.TASKS.register(loop, lambda: len(asyncio.all_tasks(loop)))
    parts.callback(metrics.TASKS.unregister, loop)
    hub = MediaHub(settings)
    hub.restream = DestinationStore(redis, settings.secret)
    if settings.workers:
        pool = hub.workers = WorkerPool(settings, settings.workers)
        parts.push_async_callback(pool.aclose)
        await pool.start()
    parts.push_async_callback(hub.aclose)
    chat_store = ChatStore(redis, settings.chat_rate_messages, settings.chat_rate_window_s)
    sockets = Connections(settings.chat_sockets_per_user, settings.chat_sockets_per_address)
    chat_hub = ChatHub(chat_redis, ChatStore(chat_redis), settings.chat_batch_ms / 1000, sockets)
    parts.push_async_callback(chat_hub.aclose)
    chat_hub.media_viewers = hub.audience
    # viewers here of broadcasts with no chat here count in the broadcast's presence too
    presence = MediaPresence(chat_hub.store, chat_hub.process, hub.watched,
                             lambda bid: bid in chat_hub.broadcasts)  # fmt: skip
    parts.push_async_callback(presence.aclose)
    presence.start()
    orders = Orders(redis, order_rules(settings), mux)
    catalog = Catalog(redis)
    feed = OverlayFeed(chat_hub, catalog, chat_store, settings.base_url)
    parts.push_async_callback(feed.aclose)
    hub.on_started, hub.on_ended = feed.started, feed.ended
    hub.on_replaced = functools.partial(stream.http.tell_replaced, redis)
    app.state.overlays = feed
    signer = TokenSigner(settings.secret, settings.token_ttl_s)
    revocations = Revocations(redis)
    context = AppContext(
        settings=settings,
        redis=redis,
        store=BroadcastStore(redis),
        signer=signer,
        hub=hub,
        chat=chat_hub,
        chat_store=chat_store,
        catalog=catalog,
        orders=orders,
        buckets=RedisBuckets(redis),
        revocations=revocations,
        verifier=Verifier(signer, revocations),
        fx=FxRates(settings.fx_rates_file),
        node_id=settings.node_id or f"{socket.gethostname()}-{os.getpid()}",
    )
    hub.node_id = context.node_id
    relay_address = await _start_relay(settings, parts, context)
    # a chat line like "구매 2" is an order: commerce's hook on the chat
    chat_hub.on_line = functools.partial(try_order, context)
    sweeper = Sweeper(redis, orders)
    parts.push_async_callback(sweeper.aclose)
    sweeper.start()
    drain = app.state.drain = Drain(hub, chat_hub)
    parts.push_async_callback(drain.aclose)
    node = app.state.node = NodeRegistry(
        redis,
        context.node_id,
        settings.node_url or settings.base_url,
        counts=lambda: {
            "broadcasts": len(hub.broadcasts),
            "edges": len(hub.edges),
            "viewers": sum(m.audience() for m in hub.audiences()),
            # the publishers of the shows composed here: other nodes answer them too
            "publishers": {b: len(m.publishers) for b, m in hub.broadcasts.items() if m.publishers},
            **drain.report(),
        },
        # the broadcasts this node is the origin of: their leases live while it does; and the
        # other nodes' URLs, whose pages may send their viewers here (CORS)
        on_beat=lambda: _beat(context, app.state.node_origins),
        on_drain=drain.heard,
    )
    node.relay = lambda: relay_address
    parts.push_async_callback(node.aclose)
    await node.start()
    if settings.stats:
        sampler = StatsSampler(redis)
        parts.push_async_callback(sampler.aclose)
        sampler.start()
    if settings.webhook_url:
        webhooks = Webhooks(redis, orders, settings.webhook_url, settings.webhook_secret,
                            retry_base_s=settings.webhook_retry_base_s)  # fmt: skip
        parts.push_async_callback(webhooks.aclose)
        webhooks.start()
    return context


async def _beat(context: AppContext, origins: NodeOrigins) -> None:
    hub = context.hub
    await renew(context.redis, [b for b, m in hub.broadcasts.items() if m.publishers],
                context.node_id)  # fmt: skip
    origins.learn(await nodes(context.redis))
    # what departed viewers used goes back to the system (core/malloc.py); off the event loop:
    # a trim walks the whole heap
    await asyncio.to_thread(trim_heap)


async def _start_relay(
    settings: Settings, parts: contextlib.AsyncExitStack, context: AppContext
) -> str:
    """With ``JANGTEO_RELAY_PORT``, this node is one of several: it relays the broadcasts it is
    the origin of to other nodes, and serves its viewers of the others' as an edge. Returns the
    relay's address as other nodes reach it ("" without one)."""
    if not settings.relay_port:
        return ""
    hub = context.hub
    relay = RelayServer(hub.broadcasts.get, settings.secret, context.node_id)
    tls = None
    if settings.relay_tls_cert and settings.relay_tls_key:
        try:
            tls = server_tls(settings.relay_tls_cert, settings.relay_tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"JANGTEO_RELAY_TLS_CERT/KEY: {exc}") from exc
    await relay.start(settings.host, settings.relay_port, tls)
    parts.push_async_callback(relay.aclose)
    hub.relay = relay
    hub.find_origin = functools.partial(
        find_origin, context.redis, context.store, hub.broadcasts.get, context.node_id
    )
    hub.follow_origins()
    host = settings.relay_host or urlsplit(settings.node_url or settings.base_url).hostname
    return f"{TLS_SCHEME if tls else ''}{host or settings.host}:{relay.port}"


def create_app(settings: Settings) -> Starlette:
    if not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (the CLI starts the embedded Redis)")
    configure_host_addresses(settings.ice_host_addresses)
    settings = with_payment_secret(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # every part is closed, in reverse order, whatever fails to start or to close
        async with contextlib.AsyncExitStack() as parts:
            app.state.ctx = await _start(settings, parts, app)
            yield

    def context() -> AppContext:
        return ctx_of(app)

    embed = settings.embed_origins  # who may frame the viewers' pages (jangteo/pages.py)
    routes = [
        *api.routes,
        *guests.routes,
        *cohosting.routes(context),
        *stream.http.routes(context),
        *hls_http.routes(context),
        *replay_http.routes(context),
        *restream_http.routes(context),
        *chat.http.routes(context),
        *commerce.http.routes(context),
        *commerce.numbers_http.routes(context),
        *commerce.merchant.routes(context),
        *commerce.payments.routes(context),
        WebSocketRoute("/ws/{bid}", bind_socket(chat_socket, context)),
        Route("/metrics", metrics_endpoint),
        Route("/openapi.json", openapi_endpoint),
        Route("/healthz", healthz),
        Route("/watch/{bid}", page(STATIC / "watch.html", embed=embed)),
        Route("/studio/{bid}", page(STATIC / "studio.html")),  # framed by nobody
        Route("/replay/{bid}", page(STATIC / "replay.html", embed=embed, hls=True)),
        Route("/screen/{bid}", page(STATIC / "screen.html", embed=embed, hls=True)),
        Route("/static/{name}", static_file),
        Route("/static/icons/{name}", icon_file),
        Route("/favicon.ico", favicon),
        Route("/manifest.webmanifest", web_manifest),
    ]
    routes = [guard(r) for r in routes]  # the access table, before every handler
    origins = NodeOrigins((settings.base_url, settings.node_url))
    cors = Middleware(
        NodeCORS,
        node_origins=origins,
        allow_origins=list(settings.cors_origins),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match"],
        expose_headers=["Location", "ETag", "Link", "Accept-Post"],
        max_age=600,
    )
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), cors],  # nosniff on CORS's answers too
        lifespan=lifespan,
        exception_handlers=dict(errors.HANDLERS),
    )
    app.state.trusted_proxies = settings.trusted_proxies
    app.state.node_origins = origins
    # the order route skips the middleware stack: see commerce/fastpath.py
    fast = OrderFastPath(app, settings.cors_origins, settings.trusted_proxies)
    fast.origins |= {o.encode() for o in origins.allowed}  # and the nodes' pages, as learnt
    origins.on_learn.append(lambda o: fast.origins.add(o.encode()))
    return fast  # type: ignore[return-value]
