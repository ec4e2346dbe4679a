"""A real RTMP server for tests and benchmarks: Debian's nginx with libnginx-mod-rtmp, started as
a child on free ports with its own configuration, and optionally nginx's ``stream`` module with TLS
in front of it (RTMPS) under a CA made for the run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from core.redisproc import free_port

from .tls import tls_files

MODULES = Path("/usr/lib/nginx/modules")


def available() -> str | None:
    """Why an RTMP server cannot be started here (None: it can)."""
    if not shutil.which("nginx"):
        return "needs nginx (apt-get install nginx libnginx-mod-rtmp libnginx-mod-stream)"
    if not (MODULES / "ngx_rtmp_module.so").exists():
        return "needs libnginx-mod-rtmp"
    return None


class NginxRtmp:
    """``rtmp://127.0.0.1:{port}/live/<key>``; with ``tls``, ``rtmps://{tls_host}:{tls_port}``
    too (its CA in ``ca_file``); with ``front``, ``rtmp://127.0.0.1:{front_port}`` through a TCP
    proxy with a small receive buffer (a far end that stops reading shows within a second)."""

    def __init__(
        self, root: Path, tls: bool = False, tls_host: str = "localhost", front: bool = False
    ) -> None:
        self.root = root
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.front_port = free_port() if front else 0
        self.tls_host = tls_host
        self.ca_file: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        servers = []
        if tls:
            ca, cert, key = tls_files(root, tls_host)
            self.ca_file = ca
            servers.append(f"""server {{ listen 127.0.0.1:{self.tls_port} ssl;
  ssl_certificate {cert}; ssl_certificate_key {key}; proxy_pass 127.0.0.1:{self.port}; }}""")
        if front:
            servers.append(f"""server {{ listen 127.0.0.1:{self.front_port} rcvbuf=8k;
  proxy_buffer_size 4k; proxy_pass 127.0.0.1:{self.port}; }}""")
        modules = f"load_module {MODULES / 'ngx_rtmp_module.so'};\n"
        stream = ""
        if servers:
            modules += f"load_module {MODULES / 'ngx_stream_module.so'};\n"
            stream = "\nstream {\n" + "\n".join(servers) + "\n}"
        (root / "nginx.conf").write_text(f"""{modules}
daemon off; master_process off; worker_processes 1; pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 256; }}
rtmp {{ server {{ listen 127.0.0.1:{self.port}; chunk_size 4096;
  application live {{ live on; record off; idle_streams off; }} }} }}{stream}
""")

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def tls_url(self, key: str) -> str:
        return f"rtmps://{self.tls_host}:{self.tls_port}/live/{key}"

    def front_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.front_port}/live/{key}"

    def pause(self) -> None:
        """SIGSTOP: the server stops reading (its sockets stay open)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def start(self) -> None:
        cmd = ["nginx", "-p", str(self.root), "-c", str(self.root / "nginx.conf")]
        quiet = subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=quiet, stderr=quiet)
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)  # nginx starting: nothing to wait on
        raise RuntimeError(f"nginx did not start (see {self.root}/error.log)")

    def kill(self) -> None:
        """kill -9: the far end drops without a goodbye."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
