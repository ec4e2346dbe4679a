"""``jangteo drain NODE``: the operator's side of a drain (jangteo/drain.py), over the HTTP API.

It asks any node of the deployment (``--url``, default ``JANGTEO_PUBLIC_URL`` or this machine's
``JANGTEO_PORT``) with the admin key (``JANGTEO_ADMIN_KEY``) to drain NODE, then with ``--wait``
follows ``GET /api/nodes`` until the node has nothing left (or has stopped), printing one JSON
line each time what it holds changes. ``--undo`` puts the node back in service. Exit status: 0
done, 1 not drained in time, 2 refused (a wrong key, no such node, no answer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any
from urllib.parse import quote

import httpx

POLL_S = 1.0


def add_drain_command(sub: Any) -> None:
    p = sub.add_parser("drain", help="take a node out of service (its sessions move to others)")
    p.add_argument("node", help="the node's id (GET /api/nodes)")
    p.add_argument("--url", default=None, help="any node of the deployment (default: "
                   "JANGTEO_PUBLIC_URL, else http://127.0.0.1:$JANGTEO_PORT)")  # fmt: skip
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="follow the drain until the node is empty, at most this long")  # fmt: skip
    p.add_argument("--undo", action="store_true", help="put the node back in service")
    p.set_defaults(run=run)


def _say(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, ensure_ascii=False), flush=True)


def run(args: argparse.Namespace) -> int:
    local = f"http://127.0.0.1:{os.environ.get('JANGTEO_PORT', '8080')}"
    url = args.url or os.environ.get("JANGTEO_PUBLIC_URL") or local
    key = os.environ.get("JANGTEO_ADMIN_KEY", "")
    if not key:
        print("jangteo drain: set JANGTEO_ADMIN_KEY (the deployment's admin key)", file=sys.stderr)
        return 2
    headers = {"Authorization": f"Bearer {key}"}
    path = f"/api/nodes/{quote(args.node, safe='')}/drain"
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=10) as http:
        try:
            r = http.delete(path) if args.undo else http.post(path)
        except httpx.HTTPError as exc:
            print(f"jangteo drain: {url}: {exc}", file=sys.stderr)
            return 2
        if r.status_code >= 400:
            print(f"jangteo drain: {r.status_code} {r.text}", file=sys.stderr)
            return 2
        _say(r.json())
        if args.undo or args.wait <= 0:
            return 0
        return _follow(http, args.node, time.monotonic() + args.wait)


def _follow(http: httpx.Client, node_id: str, deadline: float) -> int:
    """Print the node's sessions as they change; 0 once drained (or gone), 1 at ``deadline``."""
    last: object = None
    while True:
        try:
            r = http.get("/api/nodes")
            r.raise_for_status()
            found = [n for n in r.json()["nodes"] if n.get("id") == node_id]
        except (httpx.HTTPError, ValueError, KeyError) as exc:  # that node may be the one going
            print(f"jangteo drain: {exc}", file=sys.stderr)
            found = None
        if found is not None:
            record = found[0] if found else None
            state = {"node": node_id, "gone": True} if record is None else {
                "node": node_id, "drained": bool(record.get("drained")),
                "sessions": record.get("sessions")}  # fmt: skip
            if state != last:
                _say(state)
                last = state
            if record is None or record.get("drained"):
                return 0
        if time.monotonic() > deadline:
            print(f"jangteo drain: {node_id} not drained in time", file=sys.stderr)
            return 1
        time.sleep(POLL_S)  # the heartbeat is every 5 s: nothing to wait on from here
