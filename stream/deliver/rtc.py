"""Peer connections, ICE settings and the SDP helpers shared by WHIP and WHEP.

This module is the boundary with aiortc's errors: an offer aiortc cannot parse
(:func:`check_offer`) or negotiate (:func:`answer_offer`) becomes :class:`stream.errors.BadSdp`
here and nowhere else. Pure functions (``negotiated_codec``, ``announce``, ``check_offer``) take
and return text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription, sdp

from core.config import Settings
from stream.errors import BadSdp

from . import rtc_hooks  # noqa: F401  (installs the DTLS and ICE consent hooks)

MAX_SDP_BYTES = 64 * 1024
# audio + video (+ a data channel) is all any studio or player sends; every section costs the
# parser and aiortc's negotiation real time on the event loop, so a count is checked first
MAX_MEDIA_SECTIONS = 4

log = logging.getLogger(__name__)

_original_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def configure_host_addresses(addresses: Sequence[str]) -> None:
    """Make aioice gather exactly ``addresses`` (default: every interface but loopback).

    aioice never gathers 127.0.0.1 on its own; listing it here is how loopback-only runs work.
    Process-wide, like the setting it implements. Guarded by tests/test_aiortc_hooks.py.
    """
    if not addresses:
        aioice.ice.get_host_addresses = _original_get_host_addresses  # type: ignore[assignment]
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def rtc_configuration(settings: Settings) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
            for s in settings.ice_servers
        ]
    )


def new_peer_connection(settings: Settings) -> RTCPeerConnection:
    return RTCPeerConnection(configuration=rtc_configuration(settings))


PC_CLOSE_TIMEOUT_S = 5.0


async def close_peer(pc: RTCPeerConnection) -> None:
    """Close ``pc``, giving up after a few seconds: a peer that vanished mid-handshake must not
    hold a broadcast's shutdown (or the server's) forever."""
    try:
        await asyncio.wait_for(pc.close(), PC_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("peer connection did not close in %.0f s; dropped", PC_CLOSE_TIMEOUT_S)


def check_size(text: str) -> None:
    """Refuse an offer with more media sections than any real client sends, before parsing.
    The lines are aiortc's (``str.splitlines``: a bare CR, U+2028 and the like end one too)."""
    if sum(line.startswith("m=") for line in text.splitlines()) > MAX_MEDIA_SECTIONS:
        raise BadSdp(
            f"the SDP offer has more than {MAX_MEDIA_SECTIONS} media sections",
            code="too_many_media_sections",
        )


async def connected_within(pc: RTCPeerConnection, timeout: float) -> bool:
    """Whether ``pc`` reaches ``connected`` within ``timeout`` seconds (False once it fails or
    closes). A session whose peer never completes ICE and DTLS is dropped on this."""
    done = asyncio.Event()

    def check() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            done.set()

    pc.on("connectionstatechange", check)
    try:
        check()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        return bool(pc.connectionState == "connected")
    finally:
        pc.remove_listener("connectionstatechange", check)


def check_offer(text: str, *, need_send: bool) -> sdp.SessionDescription:
    """Parse an offer; BadSdp unless it has an audio/video section in a usable direction."""
    if not text.startswith("v=0"):
        raise BadSdp("the body is not an SDP offer (it must start with v=0)")
    check_size(text)
    try:
        desc = sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises whatever its regexes hit
        raise BadSdp(f"the SDP offer does not parse: {exc}") from exc
    # aiortc answers any other kind (m=text, m=message) as if it were a data channel: it crashes
    odd = [m.kind for m in desc.media if m.kind not in ("audio", "video", "application")]
    if odd:
        raise BadSdp(f"the SDP offer has a section of a kind we do not take: {odd[0]!r:.40}")
    # and it leaves a section without a transport (then crashes answering) when mids are
    # repeated, a BUNDLE group names a section that is not there, or two sections are data
    mids = [m.rtp.muxId for m in desc.media]
    if len(set(mids)) != len(mids):
        raise BadSdp("the SDP offer gives two media sections the same mid (or none)")
    bundled = {str(i) for g in desc.group if g.semantic == "BUNDLE" for i in g.items}
    if not bundled <= set(mids):
        raise BadSdp("the SDP offer's BUNDLE group names a media section it does not have")
    if sum(m.kind == "application" for m in desc.media) > 1:
        raise BadSdp("the SDP offer has more than one data channel section")
    media = [m for m in desc.media if m.kind in ("audio", "video")]
    if not media:
        raise BadSdp("the SDP offer has no audio or video section")
    wanted = ("sendonly", "sendrecv") if need_send else ("recvonly", "sendrecv")
    if not any(m.direction in wanted for m in media):
        side = "send" if need_send else "receive"
        raise BadSdp(f"the SDP offer does not {side} any media")
    for m in media:
        if m.direction is None:  # aiortc cannot answer it (every browser writes one)
            raise BadSdp("each audio and video section of the SDP offer needs a direction")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise BadSdp("the SDP offer lacks ICE credentials (ice-ufrag, ice-pwd)")
        if not m.dtls or not m.dtls.fingerprints:
            raise BadSdp("the SDP offer lacks a DTLS fingerprint")
        for fp in m.dtls.fingerprints:
            size = _FINGERPRINT_BYTES.get(fp.algorithm.lower())
            if size is None or not re.fullmatch(
                rf"[0-9A-Fa-f]{{2}}(:[0-9A-Fa-f]{{2}}){{{size - 1}}}", fp.value
            ):
                raise BadSdp(f"the SDP offer has a malformed {fp.algorithm} fingerprint")
    return desc


_FINGERPRINT_BYTES = {"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}

_MLINE = re.compile(r"^m=(\w+) \d+ \S+ (.*)$")
_RTPMAP = re.compile(r"^a=rtpmap:(\d+) ([^/\s]+)/")


def negotiated_codec(answer: str, kind: str) -> str | None:
    """The codec name (lower case) of the first payload type of the answer's ``kind`` section."""
    current: str | None = None
    first_pt: str | None = None
    for line in answer.splitlines():
        m = _MLINE.match(line)
        if m:
            if current == kind and first_pt is not None:
                break
            current = m.group(1)
            pts = m.group(2).split()
            first_pt = pts[0] if pts and current == kind else None
            continue
        if current == kind and first_pt is not None:
            r = _RTPMAP.match(line)
            if r and r.group(1) == first_pt:
                return r.group(2).lower()
    return None


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$")


def announce(answer: str, address: str | None) -> str:
    """Write ``address`` into our host candidates (and c= lines) for clients behind NAT."""
    if not address:
        return answer
    out = []
    for line in answer.split("\r\n"):
        m = _CANDIDATE.match(line)
        if m:
            line = f"{m.group(1)}{address}{m.group(3)}"
        elif line.startswith("c=IN IP"):
            line = f"c=IN IP{'6' if ':' in address else '4'} {address}"
        out.append(line)
    return "\r\n".join(out)


async def answer_offer(
    pc: RTCPeerConnection,
    offer: str,
    before_answer: Callable[[RTCPeerConnection], None] | None = None,
) -> str:
    """Apply ``offer`` and answer it (``before_answer`` may set the transceivers' directions)."""
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    except Exception as exc:  # aiortc raises ValueError/OperationError/... for offers it cannot use
        raise BadSdp(f"cannot use this offer: {exc}") from exc
    if before_answer is not None:
        before_answer(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)
