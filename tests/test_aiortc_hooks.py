"""Guards for the private aiortc/aioice internals stream/ relies on (aiortc pinned at 1.16.0).

If one of these fails after an upgrade, the hook in stream/deliver/fanout.py or
stream/deliver/rtc.py must change.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import AsyncIterator

import aioice
import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
)

from stream.deliver.fanout import ViewerTrack, route_keyframe_requests
from stream.deliver.rtc import _original_get_host_addresses, configure_host_addresses
from stream.encode.bus import FrameBus


def test_aiortc_is_the_pinned_version() -> None:
    assert importlib.metadata.version("aiortc") == "1.16.0"


def test_sender_still_has_send_keyframe() -> None:
    assert callable(getattr(RTCRtpSender, "_send_keyframe", None))
    assert callable(getattr(RTCRtpSender, "_handle_rtcp_packet", None))


def _video_track() -> ViewerTrack:
    """The track our viewers' senders carry (never read here: no connection is made)."""
    return ViewerTrack("video", lambda: FrameBus("video", lambda: None))


@pytest.fixture
async def sender() -> AsyncIterator[RTCRtpSender]:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = _video_track()
    try:
        yield pc.addTrack(track)
    finally:
        track.stop()
        await pc.close()


@pytest.mark.parametrize("fmt", [RTCP_PSFB_PLI, RTCP_PSFB_FIR], ids=["PLI", "FIR"])
async def test_pli_and_fir_reach_the_installed_function(sender: RTCRtpSender, fmt: int) -> None:
    calls: list[str] = []
    route_keyframe_requests(sender, lambda: calls.append("keyframe"))
    # the packet as it comes off the wire, parsed by aiortc itself
    wire = bytes(RtcpPsfbPacket(fmt=fmt, ssrc=0x1234, media_ssrc=sender._ssrc))
    [packet] = RtcpPacket.parse(wire)
    assert isinstance(packet, RtcpPsfbPacket) and packet.fmt == fmt
    await sender._handle_rtcp_packet(packet)
    assert calls == ["keyframe"]
    await sender._handle_rtcp_packet(packet)
    assert calls == ["keyframe", "keyframe"]


async def test_other_feedback_does_not_request_a_keyframe(sender: RTCRtpSender) -> None:
    calls: list[str] = []
    route_keyframe_requests(sender, lambda: calls.append("keyframe"))
    remb = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=b"REMB\x01\x0a\x00\x00" + b"\x00\x00\x00\x01"
    )
    await sender._handle_rtcp_packet(remb)
    assert calls == []


async def test_hook_is_per_sender(sender: RTCRtpSender) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = _video_track()
    try:
        other = pc.addTrack(track)
        calls: list[str] = []
        route_keyframe_requests(sender, lambda: calls.append("a"))
        pli = RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=other._ssrc)
        await other._handle_rtcp_packet(pli)  # the untouched sender keeps aiortc's behaviour
        assert calls == []
        assert "_send_keyframe" not in vars(other)
    finally:
        track.stop()
        await pc.close()


def test_route_keyframe_requests_refuses_a_changed_aiortc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(RTCRtpSender, "_send_keyframe")
    with pytest.raises(RuntimeError, match="_send_keyframe"):
        route_keyframe_requests(object(), lambda: None)  # type: ignore[arg-type]


# -- host addresses ----------------------------------------------------------------------------


@pytest.fixture
def restore_host_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever we do, put back what was installed before (the server fixture sets it too)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)


@pytest.mark.usefixtures("restore_host_addresses")
def test_configure_host_addresses_changes_aioice() -> None:
    configure_host_addresses(["127.0.0.1", "::1", "10.200.0.1"])
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == [
        "127.0.0.1",
        "10.200.0.1",
    ]
    assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == [
        "127.0.0.1",
        "::1",
        "10.200.0.1",
    ]
    configure_host_addresses([])
    assert aioice.ice.get_host_addresses is _original_get_host_addresses
    # the original never offers loopback
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


@pytest.mark.usefixtures("restore_host_addresses")
async def test_aioice_gathers_exactly_the_configured_address() -> None:
    configure_host_addresses(["127.0.0.1"])
    conn = aioice.Connection(ice_controlling=True)  # no STUN/TURN: nothing leaves the host
    try:
        await conn.gather_candidates()
        hosts = [c for c in conn.local_candidates if c.type == "host"]
        assert hosts and {c.host for c in hosts} == {"127.0.0.1"}
        assert {c.type for c in conn.local_candidates} == {"host"}
    finally:
        await conn.close()


# -- stream/deliver/rtc_hooks.py: DTLS ciphers and ICE consent (docs/interop.md) ------------------


def test_dtls_context_offers_rsa_suites_for_rsa_certificate_peers() -> None:
    from aiortc.rtcdtlstransport import SRTP_AES128_CM_SHA1_80, RTCCertificate
    from OpenSSL import SSL

    from stream.deliver import rtc_hooks

    assert RTCCertificate._create_ssl_context is rtc_hooks._create_ssl_context
    cert = RTCCertificate.generateCertificate()
    ctx = cert._create_ssl_context([SRTP_AES128_CM_SHA1_80])

    conn = SSL.Connection(ctx)
    names = conn.get_cipher_list()
    assert "ECDHE-RSA-AES128-GCM-SHA256" in names
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in names


def test_ice_consent_hooks_are_installed_on_the_pinned_aioice() -> None:
    import inspect

    import aioice
    import aioice.ice

    from stream.deliver import rtc_hooks

    assert aioice.__version__ == "0.13.0"
    assert aioice.ice.Connection.query_consent is rtc_hooks._query_consent
    assert aioice.ice.Connection.check_incoming is rtc_hooks._check_incoming
    # the original we wrap still has the signature our wrapper forwards
    params = list(inspect.signature(rtc_hooks._original_check_incoming).parameters)
    assert params == ["self", "message", "addr", "protocol"]
    assert isinstance(aioice.ice.CONSENT_INTERVAL, (int, float))
    assert isinstance(aioice.ice.CONSENT_FAILURES, int)


# -- the fast fan-out (stream/deliver/rtpsend.py, fastfanout.py) ----------------------------------
def test_sender_private_state_the_fast_path_uses(sender: RTCRtpSender) -> None:
    from stream.deliver.rtpsend import SENDER_FIELDS

    for name in SENDER_FIELDS:
        assert hasattr(sender, name), f"aiortc changed: RTCRtpSender has no {name}"
    assert callable(getattr(RTCRtpSender, "_run_rtp", None))
    assert callable(getattr(RTCRtpSender, "_retransmit", None))
    assert callable(getattr(RTCRtpSender, "_handle_rtcp_packet", None))
    assert hasattr(sender, "_ssrc") and hasattr(sender, "_rtx_ssrc")
    # the DTLS transport keeps its outbound SRTP session here, aioice its selected pairs
    dtls = sender.transport
    assert hasattr(dtls, "_tx_srtp")
    assert hasattr(dtls.transport, "_connection")
    assert isinstance(dtls.transport._connection._nominated, dict)


async def test_install_takes_over_rtp_retransmission_and_rtcp(sender: RTCRtpSender) -> None:
    from aiortc.rtp import RtcpPsfbPacket, RtcpRrPacket

    from stream.deliver import fastfanout

    fastfanout.install(sender, lambda codec: pytest.fail("not started without DTLS"))
    assert sender._run_rtp.__name__ == "run_rtp"
    assert sender._retransmit.__name__ == "retransmit"
    assert sender._handle_rtcp_packet.__name__ == "rtcp"
    await sender._retransmit(1234)  # nothing sent yet: nothing to send again, no error
    # before the fan-out has the viewer, RTCP goes to aiortc's own handler as it did
    await sender._handle_rtcp_packet(RtcpRrPacket(ssrc=1, reports=[]))
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=sender._ssrc))


async def test_receiver_state_a_viewer_drops_is_where_aiortc_keeps_it() -> None:
    import inspect

    from aiortc import RTCRtpReceiver

    from stream.deliver.whep import RECEIVER_FIELDS, drop_receive_state

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("video", direction="sendonly").receiver
        for name in RECEIVER_FIELDS:
            assert getattr(receiver, name) is not None, f"aiortc changed: no {name}"
        drop_receive_state(pc)
        assert all(getattr(receiver, name) is None for name in RECEIVER_FIELDS)
    finally:
        await pc.close()
    # aiortc tolerates both being None (it builds audio receivers that way)
    source = inspect.getsource(RTCRtpReceiver)
    assert "if self.__remote_bitrate_estimator is not None" in source
    assert "if self.__nack_generator is not None" in source


async def test_media_sockets_get_a_large_receive_buffer() -> None:
    """stream/deliver/rtc_hooks.py enlarges every ICE socket's receive buffer (the kernel
    reports double what was asked, up to net.core.rmem_max)."""
    import socket
    from pathlib import Path

    from stream.deliver.rtc_hooks import RECEIVE_BUFFER_BYTES

    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())  # noqa: ASYNC240 - procfs
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        (t,) = pc.getTransceivers()
        ice = t.receiver.transport.transport
        socks = [p.transport.get_extra_info("socket") for p in ice._connection._protocols]
        assert socks
        for sock in socks:
            got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            assert got >= min(RECEIVE_BUFFER_BYTES, cap), got
            assert got > 2 * 262_144 or cap <= 262_144  # more than aioice's own 256 KB
    finally:
        await pc.close()
