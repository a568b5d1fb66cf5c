"""`sinew up --demo` as a newcomer runs it: a secured three-site network starts, the demo day is
played through the ingress subjects and HTTP, the summary and the services' APIs show what it
produced, Ctrl-C stops everything, and a second `up --demo` on the same data does not replay it."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import Request, urlopen

from sinew.common.testing.nats_server import free_port

SITES = ["north", "south", "east"]
EXCEPTION_TYPES = {
    "PRICE_VARIANCE",
    "QUANTITY_VARIANCE",
    "AWAITING_RECEIPT",
    "DUPLICATE_INVOICE",
    "DUPLICATE_PAYMENT",
    "SUBSTITUTION_NOT_APPROVED",
    "UNKNOWN_ITEM",
}


def free_block(size: int = 30) -> int:
    """A base port with `size` free ports after it (each service listens on base + n)."""
    for _ in range(50):
        base = random.randrange(20_000, 60_000)
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


class Site:
    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log = data, log
        self.nats_port, self.monitor_port, self.base = free_port(), free_port(), free_block()

    def start(self) -> Site:
        argv = [sys.executable, "-m", "sinew.cli.main", "up", "--demo", "--usages", "300"]
        argv += ["--data", str(self.data), "--nats-port", str(self.nats_port)]
        argv += ["--monitor-port", str(self.monitor_port), "--http-base-port", str(self.base)]
        self.output = self.log.open("wb")
        self.process = subprocess.Popen(
            argv, stdout=self.output, stderr=subprocess.STDOUT, env={**os.environ}
        )
        return self

    def printed(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.printed():
                return self.printed()
            assert self.process.poll() is None, self.printed()
            time.sleep(0.3)
        raise AssertionError(f"{text!r} not printed in {timeout}s:\n{self.printed()[-3000:]}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=40)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.output.close()

    def get(self, site: str, service_index: int, path: str) -> dict:
        port = self.base + 10 * SITES.index(site) + service_index + 1
        token = json.loads((self.data / "secrets" / "api-tokens.json").read_text())["admin"]
        request = Request(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urlopen(request, timeout=5) as response:
            return json.loads(response.read())


def test_up_demo_plays_the_day_once_shows_its_outcomes_and_stops_cleanly(tmp_path):
    from sinew.services import built

    services = built()
    site = Site(tmp_path / "data", tmp_path / "first.log").start()
    try:
        site.wait_for("Demo day played", timeout=75)
        printed = site.wait_for("Ctrl-C stops it", timeout=10)
        assert "What the services made of it" in printed and " ! " not in printed, printed
        record = json.loads((tmp_path / "data" / "demo-played.json").read_text())
        assert record["failed"] == []
        assert record["refused"] == {"s14_multi_site": 1}  # ehr-south may not publish to north

        for name in SITES:
            outcome = record["outcomes"][name]
            assert outcome["invoices"].get("paid", 0) >= 3 and outcome["first_pass"] >= 3
            assert set(outcome["matching_exceptions"]) >= EXCEPTION_TYPES, outcome
            assert outcome["usage_exceptions"].get("UNKNOWN_ITEM") == 1
            assert outcome["receiving_exceptions"].get("UNKNOWN_ITEM") == 1  # the unapproved BMS
            assert outcome["open_signals"] >= 1 and outcome["recall_L1"] == 1

        # The summary is what the services' own APIs say.
        matching, replenishment = services.index("matching"), services.index("replenishment")
        paid = site.get("north", matching, "/v1/invoices?status=paid")
        assert paid["total"] == record["outcomes"]["north"]["invoices"]["paid"]
        signals = site.get("south", replenishment, "/v1/signals?status=open&limit=500")
        assert signals["total"] == record["outcomes"]["south"]["open_signals"]
        stent = site.get("north", replenishment, "/v1/signals?status=open&location_id=CATH-LAB-1")
        assert [s["quantity"] for s in stent["items"]] == [{"value": "3", "uom": "EA"}]

        # The malformed burst: each bad message a dead letter with its cause, at north only.
        dead = record["outcomes"]["north"]["dead_letters"]
        assert dead["matching"] == {"malformed": 2, "oversized": 1, "unknown_contract": 1}
        for service in ("receiving", "replenishment", "usage"):
            assert dead[service] == {"invalid": 1}, dead
        assert record["outcomes"]["south"]["dead_letters"] == {}
    finally:
        code = site.stop()
    assert code == 0, site.printed()[-2000:]
    assert site.printed().rstrip().endswith("stopped.")

    again = Site(tmp_path / "data", tmp_path / "second.log").start()
    try:
        printed = again.wait_for("already played", timeout=40)
        assert "Playing the demo day" not in printed
    finally:
        assert again.stop() == 0
