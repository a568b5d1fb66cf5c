"""A hospital network on loopback: three hub nodes and a leaf site per facility, each a real
nats-server on the configuration `sinew hub init`, `sinew init` and `sinew hub join` write,
started and stopped by PID."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nats

from sinew.cli.hub import HubLayout, init_hub, join_site
from sinew.cli.site import SiteLayout, init_site
from sinew.common.natsconfig import PROVISIONER
from sinew.common.testing.nats_server import nats_server_binary, stop_by_pid
from sinew.common.topology import HUB_PROVISIONER, HubNode


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all held open at once, so no two servers of the network share one."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class ServerProcess:
    name: str
    config: Path
    client_port: int
    monitor_port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def launch(self) -> None:
        with (self.config.parent / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config)], stdout=log, stderr=log
            )

    def wait_healthy(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see its log beside {self.config}")
            try:
                url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
                with urllib.request.urlopen(url, timeout=1):
                    pass
                # Monitoring answers before the client port is bound.
                socket.create_connection(("127.0.0.1", self.client_port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become healthy in {timeout} s")

    def stop(self) -> None:
        if self.process is not None:
            stop_by_pid(self.process)
        self.process = None


@dataclass
class Network:
    root: Path
    sites: list[str]
    hub: list[ServerProcess] = field(default_factory=list)
    site_servers: dict[str, ServerProcess] = field(default_factory=dict)

    @classmethod
    def written(cls, root: Path, sites: list[str]) -> Network:
        network = cls(root, sites)
        ports = iter(free_ports(4 * 3 + 2 * len(sites)))
        nodes = [
            HubNode(
                f"hub-{n}",
                "127.0.0.1",
                client_port=next(ports),
                cluster_port=next(ports),
                leaf_port=next(ports),
                monitor_port=next(ports),
                listen="127.0.0.1",
            )
            for n in (1, 2, 3)
        ]
        layout = init_hub(network.hub_data, sites, nodes)
        network.hub = [
            ServerProcess(n.name, layout.node_config(n.name), n.client_port, n.monitor_port)
            for n in nodes
        ]
        for site in sites:
            port, monitor = next(ports), next(ports)
            init_site(root / site, [site], port=port, monitor_port=monitor)
            config = join_site(root / site, site, layout.leaf_block(site))
            network.site_servers[site] = ServerProcess(site, config, port, monitor)
        return network

    @property
    def hub_data(self) -> Path:
        return self.root / "hub"

    def start_hub(self, nodes: list[ServerProcess] | None = None) -> None:
        nodes = nodes or self.hub
        for node in nodes:
            node.launch()
        for node in nodes:
            node.wait_healthy()

    def stop_hub(self) -> None:
        for node in self.hub:
            node.stop()

    def start(self) -> Network:
        self.start_hub()
        for server in self.site_servers.values():
            server.launch()
            server.wait_healthy()
        return self

    def stop(self) -> None:
        for server in [*self.site_servers.values(), *self.hub]:
            server.stop()

    def node(self, name: str) -> ServerProcess:
        return next(n for n in self.hub if n.name == name)

    def holding_leaf_of(self, site: str) -> str | None:
        """The hub node the site's leaf connection is on, from the nodes' monitoring."""
        for node in self.hub:
            if node.process is None:
                continue
            url = f"http://127.0.0.1:{node.monitor_port}/leafz"
            with urllib.request.urlopen(url, timeout=5) as response:
                leafs = json.load(response).get("leafs") or []
            if any(leaf.get("name") == f"sinew-{site}" for leaf in leafs):
                return node.name
        return None

    def password(self, site: str | None, user: str) -> str:
        path = (
            HubLayout(self.hub_data).credentials
            if site is None
            else SiteLayout(self.root / site).credentials
        )
        return json.loads(path.read_text())[user]

    async def connect_site(self, site: str, user: str = PROVISIONER, **options):
        return await nats.connect(
            self.site_servers[site].url, user=user, password=self.password(site, user), **options
        )

    async def connect_hub(self, user: str = HUB_PROVISIONER):
        # Reconnect for as long as it takes: tests stop hub nodes under this connection.
        return await nats.connect(
            [n.url for n in self.hub],
            user=user,
            password=self.password(None, user),
            inbox_prefix=f"_INBOX_{user}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,
        )
