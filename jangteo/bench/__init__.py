"""``jangteo bench <name>``: benchmarks printing one JSON line each."""

from __future__ import annotations

import argparse


def add_bench_commands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    from . import abr, chat, churn, cluster, fanout, hls, orders, overlay, report, restream

    fanout.add_command(sub)
    abr.add_command(sub)
    hls.add_command(sub)
    chat.add_command(sub)
    orders.add_command(sub)
    overlay.add_command(sub)
    restream.add_command(sub)
    report.add_command(sub)
    cluster.add_command(sub)
    churn.add_command(sub)
