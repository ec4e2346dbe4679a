"""Process-wide patches of aiortc/aioice internals that real publishers need.

Both libraries are pinned exactly (pyproject.toml); every hook here is guarded by
tests/test_aiortc_hooks.py and exercised by media_tests/test_interop.py. Installed on import of
:mod:`stream.deliver.rtc`. Why each exists: docs/interop.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aioice.ice
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
