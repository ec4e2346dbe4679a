"""The relay between nodes, origin side: a broadcast's encoded frames, once per edge node.

A node that has viewers of a broadcast whose origin is another node (stream/edge.py) opens one
TCP connection to the origin's relay listener (``JANGTEO_RELAY_PORT``) per broadcast. The
channel is the workers' (:mod:`stream.deliver.channel`, :mod:`stream.deliver.messages`), after
a mutual proof of the shared secret (:func:`greet_edge`, :func:`greet_origin`): each side sends
a fresh nonce and an HMAC-SHA256 of the secret over both nonces and its role, so neither a
stranger nor a replayed or reflected proof gets a stream. Then the edge asks for what its
viewers take (:class:`Want` a codec at a rung), the origin subscribes a :class:`WorkerFeed` to
that bus (the same back-pressure as a worker's: skip to the next keyframe when the link falls
behind), keyframe requests travel back to the origin's rate-limited encoder, and :class:`End`
says the broadcast is gone from this node.

With a certificate (``JANGTEO_RELAY_TLS_CERT``), the relay speaks TLS only and is announced as
``tls://host:port``; an edge checks it against ``JANGTEO_RELAY_CA_FILE`` (:func:`client_tls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import secrets
import ssl
from collections.abc import Callable
from typing import Protocol

from core import metrics
from core.tasks import TaskSet
from stream.encode.bus import Streams
from stream.encode.encoders import Codec

from .messages import Auth, BadMessage, End, Frame, Keyframe, Want, encode, read
from .pool import WorkerFeed

log = logging.getLogger(__name__)

GREETING_TIMEOUT_S = 10.0
NONCE_BYTES = 16


def server_tls(cert: str, key: str) -> ssl.SSLContext:
    """The relay listener's TLS: this node's certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@functools.cache
def client_tls(ca_file: str | None) -> ssl.SSLContext:
    """An edge's TLS to origins' relays, checked against ``ca_file`` (None: the system's CAs);
    made once per file (loading CAs takes a while: call it off the event loop)."""
    return ssl.create_default_context(cafile=ca_file)


class RelayRefused(ConnectionError):
    """The other side did not prove it holds the shared secret."""


def proof(secret: str, role: str, mine: str, theirs: str) -> str:
    """What a node of ``role`` (``origin`` or ``edge``) sends to prove the secret: bound to its
    own nonce and the other side's, so it is good for this connection and this direction only."""
    msg = f"jangteo-relay|{role}|{mine}|{theirs}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def _nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


async def greet_origin(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: str, node_id: str
) -> str:
    """The edge's side of the greeting; the origin's node id once it has proved the secret."""
    nonce = _nonce()
    writer.write(encode(Auth(node_id, nonce)))
    theirs = await read(reader)
    if not isinstance(theirs, Auth) or len(theirs.nonce) != 2 * NONCE_BYTES:
        raise RelayRefused("the origin did not greet")
    if not hmac.compare_digest(theirs.proof, proof(secret, "origin", theirs.nonce, nonce)):
        raise RelayRefused("the origin did not prove the shared secret")
    writer.write(encode(Auth(node_id, nonce, proof(secret, "edge", nonce, theirs.nonce))))
    return theirs.node


async def greet_edge(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: str, node_id: str
) -> str:
    """The origin's side of the greeting; the edge's node id once it has proved the secret."""
    first = await read(reader)
    if not isinstance(first, Auth) or first.proof or len(first.nonce) != 2 * NONCE_BYTES:
        raise RelayRefused("the edge did not greet")
    nonce = _nonce()
    writer.write(encode(Auth(node_id, nonce, proof(secret, "origin", nonce, first.nonce))))
    second = await read(reader)
    if (
        not isinstance(second, Auth)
        or second.nonce != first.nonce
        or not hmac.compare_digest(second.proof, proof(secret, "edge", first.nonce, nonce))
    ):
        raise RelayRefused("the edge did not prove the shared secret")
    return first.node


class Origin(Protocol):
    """A broadcast whose origin is this node, as the relay sees it."""

    bid: str
    source: Streams


class EdgeLink:
    """The origin's end of one edge node's connection: what it asked for, what was sent."""

    def __init__(self, server: RelayServer, node: str, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.node = node
        self.writer = writer
        self.alive = True
        self.feed_cpu_s = 0.0  # the origin's CPU spent feeding this edge (benchmark)
        self.bytes_out = 0
        self.feeds: dict[tuple[str, Codec, str], WorkerFeed] = {}

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    def send(self, msg: Frame | End) -> None:
        if not self.alive or self.writer.is_closing():
            return
        data = encode(msg)
        self.bytes_out += len(data)
        self.writer.write(data)

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            match await read(reader):
                case Want() as msg:
                    self.want(msg)
                case Keyframe() as msg:
                    media = self.server.origin(msg.bid)
                    if media is not None and msg.rung in ("", *media.source.rungs):
                        media.source.bus(msg.codec, msg.rung or None).request_keyframe()
                case other:
                    raise BadMessage(f"an edge does not send {other.kind!r}")

    def want(self, msg: Want) -> None:
        key = (msg.bid, msg.codec, msg.rung)
        media = self.server.origin(msg.bid)
        feed = self.feeds.pop(key, None)
        if not msg.want or media is None or (msg.rung and msg.rung not in media.source.rungs):
            if feed is not None:
                feed.detach()
            if msg.want and media is None:  # not (or no longer) the origin of it
                self.send(End(msg.bid))
            return
        if feed is not None and feed.bus is not media.source.bus(msg.codec, msg.rung or None):
            feed.detach()  # a feed of media that has ended here since
            feed = None
        self.feeds[key] = feed or WorkerFeed(self, msg.bid, media.source, msg.codec, msg.rung)

    def close(self) -> None:
        self.alive = False
        for feed in self.feeds.values():
            feed.detach()
        self.feeds.clear()
        self.writer.close()


class RelayServer:
    """This node's relay listener: edge nodes connect, prove the secret, and pull."""

    def __init__(self, origin: Callable[[str], Origin | None], secret: str, node_id: str) -> None:
        self.origin = origin  # the broadcast's media if this node is its origin
        self.secret = secret
        self.node_id = node_id
        self.links: set[EdgeLink] = set()
        self.port = 0
        self.tls: ssl.SSLContext | None = None
        self._server: asyncio.AbstractServer | None = None
        self._handlers = TaskSet()
        self._sent_closed = 0  # bytes sent to edges that have gone
        self._cpu_closed = 0.0  # CPU spent feeding them
        metrics.RELAY_EDGES.register(self, lambda: len(self.links))
        metrics.RELAY_BYTES.register(self, self.bytes_out)
        metrics.RELAY_FEED_CPU.register(self, self.feed_cpu_s)

    def bytes_out(self) -> int:
        return self._sent_closed + sum(link.bytes_out for link in self.links)

    def feed_cpu_s(self) -> float:
        return self._cpu_closed + sum(link.feed_cpu_s for link in self.links)

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        """Listen on ``host:port``; with ``tls``, every connection is TLS (made within the
        greeting's time, or refused)."""
        self.tls = tls
        self._server = await asyncio.start_server(self._accept, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("relay listening on %s:%d%s", host, self.port, " (TLS)" if tls else "")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()  # owned, so that close cancels it (start_server does not)
        if task is None or not self._handlers.adopt(task):
            writer.close()
            return
        try:
            async with asyncio.timeout(GREETING_TIMEOUT_S):
                if self.tls is not None:
                    await writer.start_tls(self.tls)
                node = await greet_edge(reader, writer, self.secret, self.node_id)
        except (TimeoutError, asyncio.IncompleteReadError, BadMessage, OSError) as exc:
            metrics.RELAY_REFUSED.inc()
            log.warning("relay connection refused: %s", exc or type(exc).__name__)
            writer.close()
            return
        link = EdgeLink(self, node, writer)
        self.links.add(link)
        log.info("edge %s connected to the relay", node)
        try:
            await link.serve(reader)
        except (asyncio.IncompleteReadError, ConnectionError, BadMessage):
            pass
        finally:
            self.links.discard(link)
            self._sent_closed += link.bytes_out
            self._cpu_closed += link.feed_cpu_s
            link.close()
            log.info("edge %s left the relay", node)

    async def aclose(self) -> None:
        metrics.RELAY_EDGES.unregister(self)
        metrics.RELAY_BYTES.unregister(self)
        metrics.RELAY_FEED_CPU.unregister(self)
        if self._server is not None:
            self._server.close()
        for link in list(self.links):
            link.close()
        await self._handlers.aclose()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
