"""Publish the test pattern and a tone over WHIP with FFmpeg's own WHIP muxer (via PyAV).

FFmpeg 8.1 (inside PyAV 18) has ``format="whip"``: H.264 (no B-frames) + Opus only, its own
minimal ICE/DTLS stack (no candidates in its offer; it connects to the FIRST UDP host candidate of
the answer). Run with the project venv::

    .venv/bin/python -m media_tests.clients.ffmpeg_whip URL TOKEN [--seconds N]

Prints ``connected`` once the muxer's header is written (ICE + DTLS + SRTP done), then
``frames N`` every second, and exits 0 after ``--seconds`` (or on SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import datetime
import fractions
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av

from stream.ingest import pattern

# The muxer's private options (FFmpeg 8.1 libavformat/whip.c; read with av_opt_next on its AVClass,
# "WHIP muxer"): handshake_timeout (int, ms, 5000), pkt_size (int, 1200), ts_buffer_size (int, -1),
# whip_flags (flags: dtls_active), rtp_history (int, 512, 64..2048), authorization (string: the
# token, without "Bearer "), cert_file, key_file (strings: PEM paths for its DTLS certificate).


def p256_certificate(directory: Path) -> tuple[str, str]:
    """A self-signed ECDSA P-256 certificate and key (PEM files) for the muxer's DTLS."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ffmpeg-whip")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def publish(args: argparse.Namespace, options: dict[str, str], stopped: Callable[[], bool]) -> int:
    """Open the WHIP muxer, then encode pattern frames and tone in real time; frames sent."""
    out = av.open(
        args.url,
        mode="w",
        format="whip",
        options=options,
    )
    vs = out.add_stream("libx264", rate=args.fps)
    vs.width, vs.height, vs.pix_fmt = args.width, args.height, "yuv420p"
    vs.bit_rate = 1_000_000
    vs.codec_context.profile = "Baseline"
    vs.codec_context.gop_size = args.fps  # a keyframe a second: the muxer ignores PLI
    vs.codec_context.max_b_frames = 0
    vs.codec_context.options = {"preset": "veryfast", "tune": "zerolatency"}
    vs.codec_context.flags |= av.codec.context.Flags.global_header  # muxer needs SPS in extradata
    astream = None
    if not args.no_audio:
        astream = out.add_stream("libopus", rate=48000, layout="stereo")
        astream.bit_rate = 64000
    out.start_encoding()  # writes the header: WHIP POST, ICE, DTLS, SRTP
    print("connected", flush=True)

    t0 = time.monotonic()
    n = 0
    a_pos = 0
    a_tb = fractions.Fraction(1, 48000)
    while not stopped() and time.monotonic() - t0 < args.seconds:
        img = pattern.draw(n, args.width, args.height, hue=args.hue)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
        frame.pts = n
        frame.time_base = fractions.Fraction(1, args.fps)
        for pkt in vs.encode(frame):
            out.mux(pkt)
        # audio up to the video clock (20 ms frames)
        while astream is not None and a_pos < (n + 1) * 48000 // args.fps:
            samples = pattern.tone(a_pos, 960, args.freq)
            af = av.AudioFrame.from_ndarray(samples, format="s16", layout="stereo")
            af.sample_rate = 48000
            af.pts = a_pos
            af.time_base = a_tb
            for pkt in astream.encode(af):
                out.mux(pkt)
            a_pos += 960
        n += 1
        if n % args.fps == 0:
            print(f"frames {n}", flush=True)
        delay = t0 + n / args.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    out.close()  # DELETEs the session (dispose_session)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--hue", type=int, default=0)
    ap.add_argument("--freq", type=float, default=440.0)
    ap.add_argument("--no-audio", action="store_true")
    ap.add_argument("--handshake-timeout", type=int, default=10000)
    ap.add_argument("--dtls-active", action="store_true", help="whip_flags=dtls_active")
    ap.add_argument("--loglevel", default="info")
    ap.add_argument(
        "--ffmpeg-cert",
        action="store_true",
        help="let FFmpeg generate its DTLS certificate (gnutls: ECDSA P-224; fails)",
    )
    args = ap.parse_args(argv)

    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.basicConfig(level=1, format="%(name)s: %(message)s", stream=sys.stderr)
    av.logging.set_level(getattr(av.logging, args.loglevel.upper()))

    options = {
        "authorization": args.token,
        "handshake_timeout": str(args.handshake_timeout),
    }
    if args.dtls_active:
        options["whip_flags"] = "dtls_active"
    with tempfile.TemporaryDirectory(prefix="ffmpeg-whip-") as tmp:
        if not args.ffmpeg_cert:
            options["cert_file"], options["key_file"] = p256_certificate(Path(tmp))
        try:
            n = publish(args, options, lambda: stop)
        except av.error.FFmpegError as exc:
            print(f"failed {exc}", flush=True)
            return 1
    print(f"done {n}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
