"""Fuzzing the SDP offers at our edge (stream/deliver/rtc.py ``check_offer``, ``answer_offer``;
stream/deliver/whep.py ``negotiate_viewer``; stream/http.py's line-ending normalisation).

Browser-like offers, mutated (lines dropped, repeated, swapped, damaged; other line endings;
random attribute lines), and random text: each is accepted -- then it has at most
MAX_MEDIA_SECTIONS sections as aiortc reads it, an audio/video section in a usable direction,
ICE credentials and a well-formed fingerprint in each -- or refused with :class:`BadSdp` (400).
An accepted offer is negotiated by a real RTCPeerConnection: an answer or BadSdp, nothing else.
Profiles: tests/fuzz_profiles.py.
"""

from __future__ import annotations

import re
import time

from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from hypothesis import event, example, given
from hypothesis import strategies as st

from stream.deliver.rtc import MAX_MEDIA_SECTIONS, MAX_SDP_BYTES, check_offer, negotiated_codec
from stream.deliver.whep import answer_send_only, negotiate_viewer, viewer_kinds
from stream.errors import BadSdp

from .fuzz_profiles import fuzz

FP256 = ":".join(f"{(i * 37) % 256:02X}" for i in range(32))
FINGERPRINTS = [f"sha-256 {FP256}", "sha-1 " + FP256[:59], f"SHA-256 {FP256.lower()}",
                f"sha-256 {FP256[:-3]}", f"sha-512 {FP256}", "md5 00:11", "sha-256",
                f"sha-256 {FP256}:ZZ"]  # fmt: skip
DIRECTIONS = ["sendonly", "recvonly", "sendrecv", "inactive"]
CODECS = {
    "audio": ["111 opus/48000/2", "0 PCMU/8000", "8 PCMA/8000", "9 G722/8000"],
    "video": ["96 VP8/90000", "102 H264/90000", "97 rtx/90000", "45 AV1/90000"],
}
EXTRA = [
    "a=rtcp-mux", "a=rtcp-rsize", "a=setup:actpass", "a=setup:active", "a=ice-options:trickle",
    "a=fmtp:97 apt=96", "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f",
    "a=fmtp:102 profile-level-id=zz", "a=rtcp-fb:96 nack pli", "a=rtcp-fb:96 goog-remb",
    "a=ssrc:1001 cname:x", "a=ssrc-group:FID 1001 1002", "a=ssrc-group:FID 1001",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", "a=extmap:x y", "a=msid:s t",
    "a=candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host", "a=candidate:garbage",
    "a=rtpmap:96", "a=rtpmap:abc VP8/90000", "a=fmtp:", "c=IN IP4", "c=IN IP6 ::1",
    "a=sctp-port:5000", "a=max-message-size:262144", "a=mid:", "a=rid:h send", "a=simulcast:send h",
    "b=AS:30", "a=end-of-candidates", "a=group:BUNDLE 0 1 2", "a=ice-lite",
]  # fmt: skip


@st.composite
def sections(draw: st.DrawFn, index: int, mild: bool) -> list[str]:
    kind = draw(
        st.sampled_from(["audio", "video", "video", "audio", "application", "text", "message"])
    )
    if kind == "application":
        lines = ["m=application 9 UDP/DTLS/SCTP webrtc-datachannel"]
    else:
        codecs = draw(st.lists(st.sampled_from(CODECS.get(kind, ["96 X/1"])),
                               min_size=1 if mild else draw(st.sampled_from([0, 1, 1, 1])),
                               max_size=4,
                               unique=True))  # fmt: skip
        pts = " ".join(c.split()[0] for c in codecs)
        lines = [f"m={kind} 9 UDP/TLS/RTP/SAVPF {pts}".rstrip()]
        lines += [f"a=rtpmap:{c}" for c in codecs]
    fingerprint = draw(st.sampled_from(FINGERPRINTS[: 3 if mild else 8]))
    lines += ["c=IN IP4 0.0.0.0", "a=ice-ufrag:Zx4q", "a=ice-pwd:p7Nq2a3VfW0sE1lKm9TyUe8b",
              f"a=fingerprint:{fingerprint}", "a=setup:actpass", f"a=mid:{index}",
              f"a={draw(st.sampled_from(DIRECTIONS))}", "a=rtcp-mux"]  # fmt: skip
    return lines


@st.composite
def offers(draw: st.DrawFn, mild: bool = False) -> str:
    """Browser-like offers, mutated (``mild``: mostly usable ones, for a real peer)."""
    lines = ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    many = [MAX_MEDIA_SECTIONS, MAX_MEDIA_SECTIONS + 1]
    count = draw(st.sampled_from([1, 1, 2, 2, 2, 3] + ([] if mild else [0, *many])))
    lines.append("a=group:BUNDLE " + " ".join(str(i) for i in range(count)))
    for i in range(count):
        lines += draw(sections(i, mild))
    for _ in range(draw(st.sampled_from([0, 0, 1] if mild else [0, 0, 0, 1, 1, 2, 3, 6]))):
        i = draw(st.integers(1, len(lines)))  # the first line stays v=0
        action = draw(st.sampled_from(["drop", "repeat", "insert", "random", "damage", "swap"]))
        if action == "drop" and i < len(lines):
            del lines[i]
        elif action == "repeat" and i < len(lines):
            lines.insert(i, lines[i])
        elif action == "insert":
            lines.insert(i, draw(st.sampled_from(EXTRA)))
        elif action == "random":
            lines.insert(i, draw(st.text(max_size=40)))
        elif action == "damage" and i < len(lines):
            cut = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:cut] + draw(st.text(max_size=3)) + lines[i][cut + 1 :]
        elif action == "swap" and 1 < i < len(lines):
            lines[i - 1], lines[i] = lines[i], lines[i - 1]
    eol = draw(st.sampled_from(["\r\n", "\r\n", "\n", "\r", "\x85", "\u2028", "\x0c"]))
    return eol.join(lines) + draw(st.sampled_from([eol, "", "\r\n"]))


def _http(text: str) -> str:
    """What stream/http.py hands on: every line ending made CRLF."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def _sections(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.startswith("m="))


def _check(text: str, need_send: bool) -> None:
    try:
        desc = check_offer(text, need_send=need_send)
    except BadSdp as exc:
        assert exc.status == 400 and exc.code in ("bad_sdp", "too_many_media_sections")
        event(f"refused: {exc.detail[:24]}")
        return
    event("accepted")
    assert len(desc.media) == _sections(text) <= MAX_MEDIA_SECTIONS
    assert all(m.kind in ("audio", "video", "application") for m in desc.media)
    wanted = ("sendonly", "sendrecv") if need_send else ("recvonly", "sendrecv")
    media = [m for m in desc.media if m.kind in ("audio", "video")]
    assert any(m.direction in wanted for m in media)
    for m in media:
        assert m.ice is not None and m.ice.usernameFragment and m.ice.password
        assert m.dtls is not None and m.dtls.fingerprints
        for fp in m.dtls.fingerprints:
            assert re.fullmatch(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+", fp.value)


def _bare_cr_offer(sections: int) -> str:
    return "\r".join(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"] + [
        f"m=audio 9 UDP/TLS/RTP/SAVPF 0\ra=ice-ufrag:u\ra=ice-pwd:p\ra=fingerprint:sha-256 {FP256}"
        f"\ra=setup:actpass\ra=mid:{i}\ra=sendrecv\ra=rtcp-mux\ra=rtpmap:0 PCMU/8000"
        for i in range(sections)]) + "\r"  # fmt: skip


def _offer(*sections: tuple[str, str, str | None], bundle: str | None = None) -> str:
    """An offer of ``sections`` (m-line, mid, direction or None), BUNDLEd by ``bundle``."""
    lines = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    mids = [mid for _, mid, _ in sections]
    lines.append(f"a=group:BUNDLE {' '.join(mids) if bundle is None else bundle}")
    for mline, mid, direction in sections:
        lines += [mline, "c=IN IP4 0.0.0.0", "a=ice-ufrag:Zx4q", "a=ice-pwd:p7Nq2a3VfW0sE1lKm9Ty",
                  f"a=fingerprint:sha-256 {FP256}", "a=setup:actpass", f"a=mid:{mid}",
                  "a=rtcp-mux"] + ([f"a={direction}"] if direction else [])  # fmt: skip
        if mline.startswith("m=audio"):
            lines.append("a=rtpmap:111 opus/48000/2")
    return "\r\n".join(lines) + "\r\n"


AUDIO = ("m=audio 9 UDP/TLS/RTP/SAVPF 111", "0", "recvonly")
DATA = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel"
# each was accepted, then aiortc's createAnswer or setLocalDescription raised (a 500):
FOUND = [
    _offer(AUDIO, ("m=text 9 UDP/TLS/RTP/SAVPF 96", "1", None)),  # answered as a data channel
    _offer(AUDIO, (DATA, "1", None), (DATA, "2", None)),  # two data channel sections
    _offer(AUDIO, ("m=audio 9 UDP/TLS/RTP/SAVPF 111", "1", "recvonly"), bundle="7 0 1"),
    _offer(AUDIO, ("m=audio 9 UDP/TLS/RTP/SAVPF 111", "0", "recvonly")),  # the same mid twice
    _offer(AUDIO, ("m=audio 9 UDP/TLS/RTP/SAVPF 111", "1", None)),  # no direction
]


@fuzz()
@given(offers(), st.booleans())
@example(FOUND[0], False)
@example(FOUND[1], False)
@example(FOUND[2], False)
@example(FOUND[3], False)
@example(FOUND[4], False)
@example(_bare_cr_offer(MAX_MEDIA_SECTIONS + 1), True)  # was accepted: aiortc splits on a bare CR
@example(_bare_cr_offer(MAX_MEDIA_SECTIONS + 1).replace("\r", "\u2028"), False)
def test_any_offer_is_accepted_whole_or_refused_as_bad_sdp(text: str, need_send: bool) -> None:
    _check(text, need_send)
    _check(_http(text), need_send)


@fuzz()
@given(st.text(max_size=300).map(lambda t: "v=0" + t) | st.text(max_size=100), st.booleans())
def test_random_text_is_refused_as_bad_sdp_or_checked(text: str, need_send: bool) -> None:
    _check(text, need_send)


@fuzz(0.05, ci_max=10)
@given(st.sampled_from(["\r\n", "\n", "\r", "\u2028"]), st.integers(1, 3))
def test_the_largest_offers_are_refused_before_parsing(eol: str, per: int) -> None:
    """64 KiB of media sections (the body limit): refused by counting, not by parsing them."""
    one = _bare_cr_offer(1).split("\r", 4)[4].replace("\r", eol)
    body = eol.join(["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]) + eol
    body += (one * per + "a=x" + eol) * (MAX_SDP_BYTES // (len(one) * per))
    cpu = time.thread_time()
    try:
        check_offer(body[:MAX_SDP_BYTES], need_send=True)
    except BadSdp as exc:
        assert exc.code == "too_many_media_sections"
    else:
        raise AssertionError("an offer of hundreds of sections was accepted")
    assert time.thread_time() - cpu < 0.1  # counted, not parsed (aiortc took 0.3 s for these)


@fuzz()
@given(st.text(), st.sampled_from(["audio", "video"]))
def test_negotiated_codec_reads_any_text(answer: str, kind: str) -> None:
    codec = negotiated_codec(answer, kind)
    assert codec is None or (codec == codec.lower() and codec)


async def _negotiate(offer: str) -> str | None:
    """The WHEP path after check_offer: a real peer answers (None: refused as BadSdp)."""
    try:
        kinds = viewer_kinds(offer)
    except BadSdp:
        return None
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if "audio" in kinds:
            pc.addTrack(AudioStreamTrack())
        if "video" in kinds:
            pc.addTrack(VideoStreamTrack())
        answer_send_only(pc)
        try:
            answer, _codec = await negotiate_viewer(pc, offer, kinds)
        except BadSdp:
            return None
        return answer
    finally:
        await pc.close()


@fuzz(0.1, ci_max=40)
@given(offers(mild=True).map(_http))
@example(FOUND[0])
@example(FOUND[1])
@example(FOUND[2])
@example(FOUND[3])
@example(FOUND[4])
@example(_offer(AUDIO, (DATA, "1", None)))  # one data channel section is fine
async def test_an_accepted_offer_is_answered_or_refused_as_bad_sdp(offer: str) -> None:
    answer = await _negotiate(offer)
    if offer in FOUND:
        assert answer is None
    if offer == _offer(AUDIO, (DATA, "1", None)):
        assert answer is not None
    event("answered" if answer is not None else "refused")
    if answer is not None:
        assert answer.startswith("v=0\r\n") and "a=fingerprint:" in answer
