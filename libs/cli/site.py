"""The embedded site: a nats-server from the wheel, every service as a supervised process, and
all state under one data folder. A second `up` on the same folder resumes where the first
stopped."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nats

from sinew.common.http import hash_token
from sinew.common.natsconfig import PROVISIONER, Credentials, server_config, site_users
from sinew.common.provision import provision
from sinew.common.testing.nats_server import nats_server_binary
from sinew.common.topology import read_leaf_block, site_leaf_config
from sinew.contracts import CATALOGUE
from sinew.services import built

ROLES = {
    "operator": ["operator"],
    "ap-analyst": ["ap"],
    "supply-chain-analyst": ["supply-chain"],
    "receiving-clerk": ["receiving"],
    "admin": ["admin"],
}


@dataclass
class SiteLayout:
    """Where everything of a site lives under the data folder."""

    data: Path

    @property
    def nats_config(self) -> Path:
        return self.data / "nats" / "nats.conf"

    @property
    def jetstream(self) -> Path:
        return self.data / "nats" / "jetstream"

    @property
    def secrets(self) -> Path:
        return self.data / "secrets"

    @property
    def credentials(self) -> Path:
        return self.secrets / "nats-credentials.json"

    @property
    def tokens(self) -> Path:
        return self.secrets / "tokens.json"

    @property
    def api_tokens(self) -> Path:
        return self.secrets / "api-tokens.json"

    def patient_token_key(self, site: str) -> Path:
        return self.secrets / f"patient-token-{site}.key"

    @property
    def logs(self) -> Path:
        return self.data / "logs"


def init_site(
    data: Path,
    sites: list[str],
    *,
    listen: str = "127.0.0.1",
    port: int = 4222,
    monitor_port: int = 8222,
    store_dir: Path | None = None,
    leaf: Path | None = None,
) -> SiteLayout:
    """Write the nats-server configuration, the NATS passwords, the API tokens and the
    patient-token keys of the sites. Existing secrets are kept, so re-running it never locks
    anyone out nor changes a patient's token. With `leaf` (the block `sinew hub init` wrote for
    the site) the server is a leaf node of the hub, in the site's own JetStream domain."""
    if leaf is not None and len(sites) != 1:
        raise SystemExit("a leaf node is one site (its JetStream domain is the site's code)")
    layout = SiteLayout(data)
    layout.secrets.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.secrets, 0o700)
    users = site_users(CATALOGUE, sites)
    credentials = Credentials.load_or_create(layout.credentials, list(users))
    layout.nats_config.parent.mkdir(parents=True, exist_ok=True)
    config = server_config(
        store_dir=store_dir or layout.jetstream,
        host=listen,
        port=port,
        monitor_port=monitor_port,
        monitor_host="0.0.0.0" if listen == "0.0.0.0" else "127.0.0.1",
        users=users,
        passwords=credentials.passwords,
        server_name=f"sinew-{'-'.join(sites)}",
    )
    if leaf is not None:
        config = site_leaf_config(config, sites[0], read_leaf_block(leaf.read_text()))
    layout.nats_config.write_text(config)
    os.chmod(layout.nats_config, 0o600)
    for user, password in credentials.passwords.items():
        _write_secret(
            layout.secrets / f"{user}.env",
            f"SINEW_NATS_USER={user}\nSINEW_NATS_PASSWORD={password}\n",
        )
    if len(sites) == 1:
        # compose runs one site per host and names the env files after the service alone.
        for service in CATALOGUE.services:
            user = f"{service}-{sites[0]}"
            _write_secret(
                layout.secrets / f"{service}.env",
                f"SINEW_NATS_USER={user}\nSINEW_NATS_PASSWORD={credentials.passwords[user]}\n",
            )
    _ensure_tokens(layout)
    ensure_patient_token_keys(layout, sites)
    return layout


def _ensure_tokens(layout: SiteLayout) -> None:
    tokens = json.loads(layout.api_tokens.read_text()) if layout.api_tokens.exists() else {}
    for name in ROLES:
        tokens.setdefault(name, secrets.token_urlsafe(32))
    _write_secret(layout.api_tokens, json.dumps(tokens, indent=2))
    hashed = {
        hash_token(token): {"name": name, "roles": ROLES[name]} for name, token in tokens.items()
    }
    _write_secret(layout.tokens, json.dumps(hashed, indent=2))


def ensure_patient_token_keys(layout: SiteLayout, sites: list[str]) -> None:
    """One key per site, written once: every patient token of the site derives from it, so a
    new key would give known patients new tokens after a rebuild (docs/services/usage.md)."""
    layout.secrets.mkdir(parents=True, exist_ok=True)
    for site in sites:
        if not layout.patient_token_key(site).exists():
            _write_secret(layout.patient_token_key(site), secrets.token_hex(32) + "\n")


def _write_secret(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    os.chmod(path, 0o600)
    path.write_text(text)


def say(text: str) -> None:
    """Print for the person at the terminal; a terminal that went away is no reason to crash."""
    try:
        print(text, flush=True)
    except OSError:
        pass


@dataclass
class Child:
    """A supervised process, restarted with back-off when it dies."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = 0.0

    async def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=log, stderr=log, start_new_session=True
            )
        self.started_at = time.monotonic()

    async def stop(self, grace: float = 30.0) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


@dataclass
class EmbeddedSite:
    data: Path
    sites: list[str]
    nats_url: str | None = None  # an existing NATS instead of the embedded one
    nats_port: int = 4222
    monitor_port: int = 8222
    http_base_port: int = 8100
    leaf: Path | None = None  # the hub's leaf block for this site: run as its leaf node
    services: list[str] = field(default_factory=built)
    children: list[Child] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def endpoints(self) -> list[tuple[str, str, str]]:
        rows = [("nats", "-", self.url), ("nats monitoring", "-", self.monitor_url or "-")]
        for site_index, site in enumerate(self.sites):
            for index, service in enumerate(self.services):
                rows.append(
                    (service, site, f"http://127.0.0.1:{self.http_port(site_index, index)}")
                )
        return rows

    @property
    def url(self) -> str:
        return self.nats_url or f"nats://127.0.0.1:{self.nats_port}"

    @property
    def monitor_url(self) -> str | None:
        return None if self.nats_url else f"http://127.0.0.1:{self.monitor_port}"

    def http_port(self, site_index: int, service_index: int) -> int:
        return self.http_base_port + 10 * site_index + service_index + 1

    async def run(self) -> None:
        layout = SiteLayout(self.data)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        passwords: dict[str, str] = {}
        try:
            await self._start(layout, passwords)
            await self._supervise()
        finally:
            # Whatever stopped us (Ctrl-C, SIGTERM, a failed provisioning, a closed terminal),
            # no child process outlives the site.
            await self._stop_children()
        say("stopped.")

    async def _start(self, layout: SiteLayout, passwords: dict[str, str]) -> None:
        if not self.nats_url:
            init_site(
                self.data,
                self.sites,
                port=self.nats_port,
                monitor_port=self.monitor_port,
                leaf=self.leaf,
            )
            passwords.update(Credentials.load_or_create(layout.credentials, []).passwords)
            server = Child(
                "nats-server",
                [nats_server_binary(), "-c", str(layout.nats_config)],
                dict(os.environ),
                layout.logs / "nats.log",
            )
            await server.start()
            self.children.append(server)
            await self._wait_for_nats()
        nc = await nats.connect(
            self.url, user=PROVISIONER if passwords else None, password=passwords.get(PROVISIONER)
        )
        await provision(nc.jetstream(), CATALOGUE, self.sites)
        await nc.close()
        ensure_patient_token_keys(layout, self.sites)  # also against an existing NATS
        for site_index, site in enumerate(self.sites):
            for index, service in enumerate(self.services):
                user = f"{service}-{site}"
                env = {
                    **os.environ,
                    "SINEW_SITE": site,
                    "SINEW_NATS_URL": self.url,
                    "SINEW_DATA_DIR": str(self.data),
                    "SINEW_TOKENS_FILE": str(layout.tokens),
                    "SINEW_HTTP_PORT": str(self.http_port(site_index, index)),
                    "SINEW_NATS_MONITOR_URL": self.monitor_url or "",
                }
                if passwords:
                    env |= {"SINEW_NATS_USER": user, "SINEW_NATS_PASSWORD": passwords[user]}
                if service == "usage":
                    env["SINEW_PATIENT_TOKEN_KEY_FILE"] = str(layout.patient_token_key(site))
                child = Child(
                    user,
                    [sys.executable, "-m", "sinew.cli.main", "run", service],
                    env,
                    layout.logs / f"{user}.log",
                )
                await child.start()
                self.children.append(child)
        self.print_table(layout)

    async def _wait_for_nats(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.nats_port)
                writer.close()
                return
            except OSError:
                server = self.children[0].process
                if server and server.returncode is not None:
                    raise SystemExit(f"nats-server exited; see {self.children[0].log}") from None
                await asyncio.sleep(0.1)
        raise SystemExit("nats-server did not start in 20 s")

    async def _supervise(self) -> None:
        while not self.stopping.is_set():
            for child in self.children:
                if child.process and child.process.returncode is not None:
                    if child.name == "nats-server":
                        say(f"nats-server exited ({child.process.returncode}); restarting")
                    backoff = min(30.0, 2.0 ** min(child.restarts, 5))
                    if time.monotonic() - child.started_at > 60:
                        child.restarts, backoff = 0, 1.0
                    say(
                        f"{child.name} exited with {child.process.returncode}; "
                        f"restarting in {backoff:.0f}s (log: {child.log})"
                    )
                    child.restarts += 1
                    child.process = None
                    asyncio.get_running_loop().call_later(
                        backoff, lambda c=child: asyncio.ensure_future(c.start())
                    )
            try:
                await asyncio.wait_for(self.stopping.wait(), 0.5)
            except TimeoutError:
                pass
        say("stopping: services drain and flush their outboxes...")

    async def _stop_children(self) -> None:
        services = [c for c in self.children if c.name != "nats-server"]
        await asyncio.gather(*(c.stop() for c in services), return_exceptions=True)
        for child in self.children:
            if child.name == "nats-server":
                await child.stop()

    def print_table(self, layout: SiteLayout) -> None:
        width = max(len(r[0]) for r in self.endpoints()) + 2
        say(f"\nSinew site {', '.join(self.sites)} is up; data in {self.data.resolve()}\n")
        for name, site, url in self.endpoints():
            say(f"  {name:<{width}} {site:<8} {url}")
        if not self.services:
            say("  (no service is built in this checkout yet)")
        if not self.nats_url:
            say(f"\n  NATS users and passwords: {layout.credentials}")
            say(f"  API tokens (bearer):      {layout.api_tokens}")
        say("\nCtrl-C stops everything cleanly; `sinew up` again resumes.\n")
