"""The dashboard as a materials manager sees it: a real headless Chromium loads the page during a
demo run, the figures it shows are the API's, and a screenshot is kept with the test's files.

Needs Debian's chromium (`apt-get install chromium`); `.ci/run` installs it."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.request import urlopen

sys.path.insert(0, str(Path(__file__).parents[1] / "demo"))
from test_demo_site import Site  # the demo test's way of starting `sinew up --demo`

CHROMIUM = shutil.which("chromium")
# Headless, and without the background connections a closed network refuses.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1800",
    "--virtual-time-budget=8000",
]


def chromium(tmp_path: Path, *args: str) -> str:
    run = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium'}", *args],
        capture_output=True,
        text=True,
        timeout=90,
    )
    return run.stdout


def test_the_dashboard_shows_the_apis_figures_in_a_real_browser(tmp_path):
    assert CHROMIUM, "Debian's chromium is needed for this test: apt-get install chromium"
    site = Site(tmp_path / "data", tmp_path / "up.log").start()
    try:
        printed = site.wait_for("Dashboard: ", 180)
        url = re.search(r"Dashboard: (http://\S+?)/? ", printed).group(1)
        kpis = json.load(urlopen(f"{url}/v1/kpis?site=north", timeout=10))
        page = chromium(tmp_path, "--dump-dom", f"{url}/")
        text = re.sub(r"<[^>]+>", " ", page)
        text = re.sub(r"\s+", " ", text)
        rate = math.floor(kpis["first_pass_match_rate"] * 100 + 0.5)  # as JavaScript rounds
        assert f"Invoices matched first time {rate}%" in text, text[:2000]
        assert (
            f"{kpis['invoices_first_pass']} of {kpis['invoices_matched']} matched invoices" in text
        )
        assert f"Open exceptions {kpis['open_exceptions']['count']} " in text
        assert f"Items below par {kpis['below_par']['open_signals']} " in text
        assert "Cardiac catheterisation lab 1" in text, "stock below par names the location"
        # The SRE's view: each service's own figures, and the demo's bad input that services
        # terminated, as JetStream's advisories count it.
        assert "Outbox backlog" in text and "Duplicates absorbed" in text
        technical = json.load(urlopen(f"{url}/v1/technical", timeout=10))
        terminated = [a for a in technical["advisories"] if a["kind"] == "terminated"]
        assert terminated, "the demo's malformed messages were terminated"
        assert "terminated by the service" in text
        screenshot = tmp_path / "dashboard.png"
        chromium(tmp_path, f"--screenshot={screenshot}", f"{url}/")
        assert screenshot.stat().st_size > 20_000
    finally:
        assert site.stop() == 0
