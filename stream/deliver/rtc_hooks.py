"""Process-wide patches of aiortc/aioice internals that real publishers need.

Both libraries are pinned exactly (pyproject.toml); every hook here is guarded by
tests/test_aiortc_hooks.py and exercised by media_tests/test_interop.py. Installed on import of
:mod:`stream.deliver.rtc`. Why each exists: docs/interop.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
import time

import aioice.ice
import aioice.turn
from aioice import stun
from aiortc.rtcdtlstransport import RTCCertificate, SRTPProtectionProfile
from OpenSSL import SSL

log = logging.getLogger(__name__)

# GStreamer 1.22's webrtcbin (and other DTLS servers with RSA certificates) share no suite with
# aiortc's ECDSA-only list. Guarded by tests/test_aiortc_hooks.py and media_tests/test_interop.py.
DTLS_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES256-SHA"
)
_original_create_ssl_context = RTCCertificate._create_ssl_context


def _create_ssl_context(
    self: RTCCertificate, srtp_profiles: list[SRTPProtectionProfile]
) -> SSL.Context:
    ctx = _original_create_ssl_context(self, srtp_profiles)
    ctx.set_cipher_list(DTLS_CIPHERS)
    return ctx


RTCCertificate._create_ssl_context = _create_ssl_context  # type: ignore[method-assign]


PEER_CHECK_GRACE_S = 15.0  # three of FFmpeg's 5 s consent checks
_original_check_incoming = aioice.ice.Connection.check_incoming


def _check_incoming(
    self: aioice.ice.Connection,
    message: stun.Message,
    addr: tuple[str, int],
    protocol: aioice.ice.StunProtocol,
) -> None:  # aioice calls it for authenticated requests only
    self._peer_checked_at = time.monotonic()  # type: ignore[attr-defined]
    _original_check_incoming(self, message, addr, protocol)


async def _query_consent(self: aioice.ice.Connection) -> None:
    """aioice 0.13's loop; a failed check does not count while the peer itself keeps checking."""
    assert self.remote_password is not None
    failures = 0
    while True:
        await asyncio.sleep(aioice.ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        for pair in self._nominated.values():
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request,
                    pair.remote_addr,
                    integrity_key=self.remote_password.encode("utf8"),
                    retransmissions=0,
                )
                failures = 0
            except stun.TransactionError:
                heard = getattr(self, "_peer_checked_at", None)
                if heard is not None and time.monotonic() - heard < PEER_CHECK_GRACE_S:
                    failures = 0
                else:
                    failures += 1
            if failures >= aioice.ice.CONSENT_FAILURES:
                log.info("consent to send expired")
                self._query_consent_task = None
                await self.close()
                return


aioice.ice.Connection.check_incoming = _check_incoming  # type: ignore[method-assign]
aioice.ice.Connection.query_consent = _query_consent  # type: ignore[method-assign]


# Garbage at a session's port, from anyone: aioice hands every datagram that is not STUN to aiortc,
# whatever its source address, and aiortc 1.16's DTLS receive loop ends the session (and the
# peer connection) on any exception but pylibsrtp.Error. Two inputs raise one: an empty datagram
# (it reads ``data[0]``) and an SRTP/SRTCP-looking one (first byte 128-191) longer than
# pylibsrtp's buffer (ValueError "packet is too long"). Both are dropped here, as aiortc would
# drop them if it caught the error. media_tests/test_garbage_datagrams.py
SRTP_MAX_BYTES = 1500  # pylibsrtp 1.0's unprotect buffer
_original_data_received = aioice.ice.Connection.data_received


def _data_received(self: aioice.ice.Connection, data: bytes, component: int) -> None:
    if not data or (127 < data[0] < 192 and len(data) > SRTP_MAX_BYTES):
        return
    _original_data_received(self, data, component)


# aioice 0.13's STUN parser raises struct.error, not the ValueError it documents, for an
# attribute of the wrong length (PRIORITY, FINGERPRINT, ICE-CONTROLLING…): it escaped the
# datagram callback, one ERROR with a traceback in the log per datagram. Not STUN, then: data.
original_parse_message = stun.parse_message


def _parse_message(data: bytes) -> stun.Message:
    try:
        return original_parse_message(data)
    except struct.error as exc:
        raise ValueError(f"STUN attribute of the wrong length: {exc}") from exc


aioice.ice.Connection.data_received = _data_received  # type: ignore[method-assign]
stun.parse_message = _parse_message


# Every media socket gets a receive buffer large enough for a burst (a publisher's keyframe, or a
# flood of garbage while the event loop is busy): aioice 0.13 sets its host sockets' (and TURN's)
# to this module constant, 256 KB; a full buffer drops the publisher's own packets with the rest.
# (The kernel caps it at net.core.rmem_max.)
RECEIVE_BUFFER_BYTES = 1 << 20
aioice.turn.UDP_SOCKET_BUFFER_SIZE = RECEIVE_BUFFER_BYTES
