"""The relay between nodes over TLS: an origin with a certificate announces ``tls://`` and speaks
nothing else; an edge that trusts its CA pulls the picture through it, one that does not (or
that speaks plain TCP) gets nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from core.metrics import RELAY_REFUSED
from core.nodes import nodes
from jangteo.testkit.server import RunningServer, eventually
from jangteo.testkit.tls import tls_files
from stream.deliver.messages import Want, encode
from stream.edge import backoff_s
from stream.encode.encoders import Codec

from .helpers import is_pattern, wait_for_frame
from .test_edges import go_live, node, viewer

pytestmark = pytest.mark.timeout(120)


def tls_node(
    redis_url: str, name: str, ca: Path, cert: Path | None = None, key: Path | None = None
) -> contextlib.AbstractAsyncContextManager[RunningServer]:
    """A node checking origins' relays against ``ca``; with ``cert``, its own relay is TLS."""
    return node(redis_url, name, relay_ca_file=str(ca), relay_tls_cert=cert and str(cert),
                relay_tls_key=key and str(key))  # fmt: skip


async def test_an_edge_pulls_over_tls_and_only_with_the_ca(redis_url: str, tmp_path: Path) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ca, cert, key = tls_files(tmp_path / "ours", "127.0.0.1")
    other_ca, _, _ = tls_files(tmp_path / "theirs", "127.0.0.1")
    async with (
        tls_node(redis_url, "tls-a", ca, cert, key) as a,
        tls_node(redis_url, "tls-b", ca, cert, key) as b,
        tls_node(redis_url, "tls-c", other_ca) as c,
    ):
        records = {r["id"]: r for r in await nodes(a.ctx.redis)}
        assert records["tls-a"]["relay"] == f"tls://127.0.0.1:{a.settings.relay_port}"
        bid, pub = await go_live(a)
        trusted = await viewer(b, bid, "trusted")
        stranger = await viewer(c, bid, "stranger")
        try:
            await wait_for_frame(trusted, lambda f: f.image is not None and is_pattern(f.image), 15)
            assert b.ctx.hub.edges[bid].pulls == 1
            # C does not trust A's certificate: it never pulls, and keeps trying, less and less
            # often: the third failure in a row waits backoff_s(3) = 2 s (without a backoff,
            # 0.25 s); seen from here a little late, so judged against half of it
            edge_c = c.ctx.hub.edges[bid]
            await eventually(lambda: edge_c.attempts >= 3, "C trying three times", 10)
            third = time.monotonic()
            await eventually(lambda: edge_c.attempts >= 4, "C trying a fourth time", 10)
            assert time.monotonic() - third > backoff_s(3) / 2
            assert edge_c.pulls == 0 and not stranger.frames
            # plain TCP to a TLS relay: refused, nothing sent
            before = RELAY_REFUSED.value()
            reader, writer = await asyncio.open_connection("127.0.0.1", a.settings.relay_port)
            writer.write(encode(Want(bid, Codec.OPUS, "")))
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            await eventually(lambda: RELAY_REFUSED.value() > before, "the refusal counted", 5)
            assert a.ctx.hub.relay is not None
            assert [link.node for link in a.ctx.hub.relay.links] == ["tls-b"]
        finally:
            for v in (trusted, stranger):
                await v.aclose()
            await pub.aclose()
