"""The overlay feed: keeps each broadcast's overlay in step with its events.

Pins, product and stock changes, orders and hearts are events on the broadcast's chat stream in
Redis (whatever process the API call landed on). For every broadcast whose media runs on this
process, the feed holds the chat reader (``ChatHub.join``), listens to its event batches, and
swaps a new :class:`stream.compose.overlay.OverlayModel` into the compositor's overlay. On start,
and after the reader lost its place in the stream, the state is reloaded from Redis (pin, product,
stock, hearts); events that arrive while it loads are applied after it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from redis.exceptions import RedisError

from chat.hub import ChatHub
from chat.store import ChatStore
from commerce.catalog import Catalog, deal_of, image_pid
from core.problems import Problem
from core.tasks import TaskSet
from stream.cohosting import load_layout
from stream.compose.overlay import TICKER_LINES, Overlay, OverlayModel, Pinned, Tick
from stream.compose.sprites import Image
from stream.media import BroadcastMedia

log = logging.getLogger(__name__)

THUMB_MAX = 320  # thumbnails are decoded and shrunk once, to at most this side


def decode_thumb(jpeg: bytes) -> Image | None:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    scale = min(1.0, THUMB_MAX / max(h, w))
    if scale < 1.0:
        img = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    return np.asarray(img, np.uint8)


class BroadcastOverlay:
    """One broadcast's overlay state, driven by its events."""

    def __init__(
        self, bid: str, overlay: Overlay, catalog: Catalog, chat_store: ChatStore, base_url: str
    ) -> None:
        self.bid = bid
        self.overlay = overlay
        self.catalog = catalog
        self.chat_store = chat_store
        self.base_url = base_url.rstrip("/")
        self.product: dict[str, Any] | None = None
        self.deal: dict[str, Any] | None = None
        self.orders: collections.deque[Tick] = collections.deque(maxlen=TICKER_LINES)
        self.hearts = 0
        self.thumbs: dict[str, Image | None] = {}  # image path → decoded thumbnail
        self._buffer: list[dict[str, Any]] | None = None  # events seen while loading
        self._published = asyncio.Event()  # set (and replaced) at every new model
        self._loading = asyncio.Lock()
        self._again = False
        # a layout switch made through another process reaches the compositor here
        self.on_layout: Callable[[str], None] | None = None
        self._tasks = TaskSet()

    # -- loading -------------------------------------------------------------------------------
    async def load(self) -> None:
        """The state from Redis; events seen meanwhile are applied afterwards. One load at a
        time: a reset during a load makes it run once more."""
        if self._loading.locked():
            self._again = True
            return
        async with self._loading:
            self._again = True
            while self._again:
                self._again = False
                await self._load_once()

    async def _load_once(self) -> None:
        self._buffer = []
        try:
            record = await self.catalog.pin(self.bid)
            product = None
            if record is not None:
                try:
                    product = await self.catalog.get(self.bid, record["product_id"])
                except Problem:  # the pinned product was deleted
                    product = None
            self.hearts = await self.chat_store.hearts(self.bid)
            layout = await load_layout(self.catalog.redis, self.bid)
            if self.on_layout is not None:  # the stored layout: a new compositor starts in it
                self.on_layout(layout)
            self.product = product
            self.deal = deal_of(record)
        finally:
            buffered, self._buffer = self._buffer, None
        for event in buffered:
            self._apply(event)
        self._publish()

    def _reload(self) -> None:
        self._tasks.spawn(self._try_load(), name=f"overlay-{self.bid}")

    async def _try_load(self) -> None:
        try:
            await self.load()
        except (RedisError, OSError) as exc:
            log.warning("overlay reload failed: %s", exc, extra={"bid": self.bid})

    async def aclose(self) -> None:
        await self._tasks.aclose()

    # -- events ----------------------------------------------------------------------------------
    def on_events(self, events: list[dict[str, Any]]) -> None:
        if self._buffer is not None:
            self._buffer.extend(events)
            return
        changed = False
        for event in events:
            if event.get("type") == "reset":
                self._reload()
                return
            changed |= self._apply(event)
        if changed:
            self._publish()

    def _apply(self, e: dict[str, Any]) -> bool:
        """Apply one event; whether it changed what is drawn."""
        kind, p = e.get("type"), self.product
        if kind == "pin":
            product = e.get("product")
            self.product = dict(product) if product else None
            self.deal = product.get("deal") if product else None
            return True
        if kind == "product" and p is not None and e["product"].get("id") == p["id"]:
            self.product = dict(e["product"])
            self.thumbs.pop(str(self.product.get("image")), None)  # a new snapshot, maybe
            return True
        if kind == "stock" and p is not None and e.get("product_id") == p["id"]:
            left = int(e["left"])
            option = e.get("option")
            if option and p.get("options"):
                p["options"] = [o | {"stock": left} if o["id"] == option else o
                                for o in p["options"]]  # fmt: skip
                p["stock"] = sum(int(o["stock"]) for o in p["options"])
            elif not option:
                p["stock"] = left
            return True
        if kind == "order":
            name = str(e.get("buyer_name_masked") or "")
            self.orders.append(Tick(name, int(e.get("qty") or 1), int(e.get("ts") or 0)))
            return True
        if kind == "hearts":
            self.hearts = int(e.get("total") or 0)
            return True
        if kind == "layout" and self.on_layout is not None:
            self.on_layout(str(e.get("layout")))
            return True
        return False

    # -- the model -------------------------------------------------------------------------------
    def _publish(self) -> None:
        p, deal = self.product, self.deal or {}
        pinned = None
        if p is not None:
            image = p.get("image")
            if image and image not in self.thumbs:
                self.thumbs[image] = None
                self._load_thumb(image)
            pinned = Pinned(
                id=p["id"],
                name=str(p["name"]),
                price=int(p["price"]),
                list_price=int(p["list_price"]) if p.get("list_price") else None,
                deal_price=int(deal["price"]) if deal.get("price") is not None else None,
                deal_ends_at=int(deal["ends_at"]) if deal.get("ends_at") else None,
                stock=int(p.get("stock") or 0),
                order_url=f"{self.base_url}/watch/{self.bid}?product={p['id']}",
                thumb=self.thumbs.get(image) if image else None,
            )
        self.overlay.model = OverlayModel(pinned, tuple(self.orders), self.hearts)
        self._published.set()
        self._published = asyncio.Event()

    async def until(self, check: Callable[[OverlayModel], bool], timeout: float = 5.0) -> None:
        """Wait until the model satisfies ``check`` (TimeoutError after ``timeout`` s)."""
        async with asyncio.timeout(timeout):
            while not check(self.overlay.model):
                await self._published.wait()

    def _load_thumb(self, image: str) -> None:
        pid = image_pid(self.bid, image)
        if pid is None:
            return  # images elsewhere are not fetched (the server talks to no other host)

        async def load() -> None:
            try:
                jpeg = await self.catalog.image(self.bid, pid)
            except (Problem, RedisError, OSError):
                return
            thumb = await asyncio.to_thread(decode_thumb, jpeg)
            self.thumbs[image] = thumb
            self._publish()

        self._tasks.spawn(load(), name=f"overlay-thumb-{self.bid}")


class OverlayFeed:
    """Every broadcast with media on this process: its overlay follows its events."""

    def __init__(
        self, chat: ChatHub, catalog: Catalog, chat_store: ChatStore, base_url: str
    ) -> None:
        self.chat = chat
        self.catalog = catalog
        self.chat_store = chat_store
        self.base_url = base_url
        self.active: dict[str, BroadcastOverlay] = {}

    async def started(self, media: BroadcastMedia) -> None:
        bid = media.bid
        b = BroadcastOverlay(
            bid, media.compositor.overlay, self.catalog, self.chat_store, self.base_url
        )
        compositor = media.compositor

        def on_layout(name: str) -> None:
            try:
                compositor.layout = name
            except ValueError:
                log.warning("unknown layout %r in the event stream", name, extra={"bid": bid})

        b.on_layout = on_layout
        chat = await self.chat.join(bid)
        chat.listeners.append(b.on_events)
        self.active[bid] = b
        try:
            await b.load()
        except (RedisError, OSError) as exc:  # the video goes on; the next reset reloads
            log.warning("overlay state not loaded: %s", exc, extra={"bid": bid})

    async def ended(self, bid: str) -> None:
        b = self.active.pop(bid, None)
        if b is None:
            return
        chat = self.chat.broadcasts.get(bid)
        if chat is not None and b.on_events in chat.listeners:
            chat.listeners.remove(b.on_events)
        self.chat.release(bid)
        await b.aclose()

    async def aclose(self) -> None:
        for bid in list(self.active):
            await self.ended(bid)
