"""Shared test helpers: run a service in-process or as a killable process, publish as an outside
system would, and wait for an outcome without fixed sleeps."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

import nats

from sinew.common.config import Settings
from sinew.common.provision import DeliveryPolicy, provision
from sinew.common.service import Runtime, ServiceDefinition, serve
from sinew.common.testing.nats_server import stop_by_pid
from sinew.contracts.envelope import Envelope, new_event_id, utc_now

# Redeliver quickly so crash tests do not wait on production back-off.
FAST = DeliveryPolicy(max_deliver=4, backoff=[1.0, 1.0, 1.0], nak_delays=[0.2, 0.2, 0.2])


def new_site() -> str:
    return "t" + uuid.uuid4().hex[:8]


async def eventually(
    check: Callable[[], Awaitable[bool] | bool],
    timeout: float = 20.0,  # noqa: ASYNC109 (a polling deadline, not a cancel scope)
    interval: float = 0.05,
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def envelope_headers(site: str, type_: str, event_id: str | None = None, **extra) -> dict:
    envelope = Envelope(
        id=event_id or new_event_id(),
        source=f"/test/{site}",
        type=type_,
        time=utc_now(),
        site=site,
        correlation_id=extra.pop("correlation_id", new_event_id()),
    )
    return {**envelope.headers(), **extra}


async def publish(
    js,
    subject: str,
    payload: bytes,
    *,
    site: str,
    event_id: str | None = None,
    type_: str = "",
    **extra,
):
    return await js.publish(
        subject, payload, headers=envelope_headers(site, type_, event_id, **extra)
    )


def query(db_path: Path, sql: str, params=()) -> list[tuple]:
    """Read a service's database from outside, as an auditor would."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(db_path: Path, table: str, where: str = "1=1") -> int:
    """Rows in a table; 0 while the service has not created its database yet."""
    try:
        return query(db_path, f"SELECT count(*) FROM {table} WHERE {where}")[0][0]
    except sqlite3.OperationalError:  # no file or no table yet: the service is still starting
        return 0


def patient_token_key(data_dir: Path, site: str) -> Path:
    """The site's key file, written once like `sinew up` does, so a restart keeps the tokens."""
    path = data_dir / "secrets" / f"patient-token-{site}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
    return path


def settings_for(service: str, site: str, server, data_dir: Path, **overrides) -> Settings:
    if service == "usage":
        overrides.setdefault("patient_token_key_file", patient_token_key(data_dir, site))
    return Settings(
        service=service,
        site=site,
        nats_url=server.url,
        data_dir=data_dir,
        nats_monitor_url=server.monitor_url,
        **overrides,
    )


@asynccontextmanager
async def running(
    definition: ServiceDefinition,
    settings: Settings,
    catalogue,
    policy: DeliveryPolicy = FAST,
    provisioned: bool = True,
):
    """Run a service in this process until the block ends; yields its Runtime."""
    if provisioned:
        nc = await nats.connect(settings.nats_url)
        await provision(nc.jetstream(), catalogue, [settings.site], [definition.name], policy)
        await nc.close()
    started = asyncio.Event()
    holder: list[Runtime] = []
    task = asyncio.create_task(
        serve(
            definition,
            settings,
            catalogue=catalogue,
            policy=policy,
            started=started,
            runtime_ready=holder.append,
            install_signal_handlers=False,
        )
    )
    done, _ = await asyncio.wait(
        [task, asyncio.create_task(started.wait())], timeout=30, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        task.result()
    runtime = holder[0]
    try:
        yield runtime
    finally:
        runtime.stopped.set()
        await asyncio.wait_for(task, 30)


class ServiceProcess:
    """A service as its own OS process, so a test can SIGKILL it at the worst moment. Every one
    still alive when its test ends is stopped by the `stop_service_processes` fixture."""

    started: ClassVar[list[ServiceProcess]] = []

    def __init__(
        self, module: str, settings: Settings, args: list[str] | None = None, faults: str = ""
    ) -> None:
        self.module = module
        self.settings = settings
        self.args = args or []
        self.faults = faults
        self.process: subprocess.Popen | None = None
        self.log_path = settings.data_dir / f"{settings.service}-{settings.site}.log"

    def start(self, faults: str | None = None) -> ServiceProcess:
        env = {
            **os.environ,
            "SINEW_SITE": self.settings.site,
            "SINEW_NATS_URL": self.settings.nats_url,
            "SINEW_DATA_DIR": str(self.settings.data_dir),
            "SINEW_NATS_MONITOR_URL": self.settings.nats_monitor_url or "",
            "SINEW_FAULTS": self.faults if faults is None else faults,
        }
        if self.settings.patient_token_key_file:
            env["SINEW_PATIENT_TOKEN_KEY_FILE"] = str(self.settings.patient_token_key_file)
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args], env=env, stdout=log, stderr=log
            )
        ServiceProcess.started.append(self)
        return self

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.process is None:
            return None
        return stop_by_pid(self.process, sig, timeout)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


async def provisioned(
    server, catalogue, site: str, services: list[str], policy: DeliveryPolicy = FAST
) -> None:
    nc = await nats.connect(server.url)
    try:
        await provision(nc.jetstream(), catalogue, [site], services, policy)
    finally:
        await nc.close()


async def subject_messages(js, stream: str, subject: str) -> list:
    """Every message on a subject, read from the start with an ephemeral ordered consumer."""
    info = await js.stream_info(stream, subjects_filter=subject)
    expected = sum((info.state.subjects or {}).values())
    messages = []
    if expected:
        sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=None)
        try:
            while len(messages) < expected:
                messages.append(await sub.next_msg(timeout=5))
        finally:
            await sub.unsubscribe()
    return messages
