"""`sinew up`, `sinew init` and the operator commands, run as a newcomer and an SRE would."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import msgspec
import nats
import pytest
from helpers import eventually, new_site, provisioned, publish, running, settings_for

from sinew.common.natsconfig import OPERATOR, PROVISIONER
from sinew.common.testing import sample
from sinew.common.testing.nats_server import free_port
from sinew.contracts import CATALOGUE


def sinew(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sinew.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


async def asinew(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI from a thread, so a service running in this test's event loop can answer it."""
    return await asyncio.to_thread(sinew, *args, env=env)


@pytest.mark.asyncio
async def test_up_starts_a_secured_site_stops_cleanly_and_resumes(tmp_path):
    data = tmp_path / "data"
    port, monitor = free_port(), free_port()
    argv = [
        sys.executable,
        "-m",
        "sinew.cli.main",
        "up",
        "--data",
        str(data),
        "--site",
        "north",
        "--site",
        "south",
        "--nats-port",
        str(port),
        "--monitor-port",
        str(monitor),
    ]

    started: list[asyncio.subprocess.Process] = []

    async def start() -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        started.append(process)
        lines = []
        while not any("Ctrl-C stops everything" in line for line in lines):
            line = await asyncio.wait_for(process.stdout.readline(), 60)
            assert line, "sinew up exited early:\n" + "".join(lines)
            lines.append(line.decode())
        assert f"nats://127.0.0.1:{port}" in "".join(lines)
        return process

    try:
        process = await start()
        passwords = json.loads((data / "secrets" / "nats-credentials.json").read_text())
        assert oct((data / "secrets" / "nats-credentials.json").stat().st_mode)[-3:] == "600"
        assert "sync_interval" in (data / "nats" / "nats.conf").read_text()
        # Anonymous connections are refused; each party has its own user.
        with pytest.raises(Exception):  # noqa: B017 (the client raises several kinds)
            await nats.connect(
                f"nats://127.0.0.1:{port}",
                max_reconnect_attempts=1,
                connect_timeout=2,
                allow_reconnect=False,
            )
        nc = await nats.connect(
            f"nats://127.0.0.1:{port}", user=PROVISIONER, password=passwords[PROVISIONER]
        )
        js = nc.jetstream()
        assert {s.name for s in CATALOGUE.streams} <= {
            s.config.name for s in await js.streams_info()
        }
        consumers = {c.name for c in await js.consumers_info("INGRESS")}
        assert {"matching-north", "matching-south", "items-north"} <= consumers
        clinical = {c.name for c in await js.consumers_info("CLINICAL_INGRESS")}
        assert clinical == {"usage-north", "usage-south"}
        ehr = await nats.connect(
            f"nats://127.0.0.1:{port}",
            user="ehr-north",
            password=passwords["ehr-north"],
            inbox_prefix="_INBOX_ehr-north",
        )
        await ehr.jetstream().publish("sinew.ingress.north.usage.recorded.v1", b"{}")
        await ehr.close()
        await nc.close()

        process.send_signal(signal.SIGINT)
        output = (await asyncio.wait_for(process.stdout.read(), 60)).decode()
        assert await process.wait() == 0
        assert "stopped." in output

        process = await start()  # resumes: same secrets, same stored messages
        assert json.loads((data / "secrets" / "nats-credentials.json").read_text()) == passwords
        nc = await nats.connect(
            f"nats://127.0.0.1:{port}",
            user=OPERATOR,
            password=passwords[OPERATOR],
            inbox_prefix=f"_INBOX_{OPERATOR}",
        )
        info = await nc.jetstream().stream_info("CLINICAL_INGRESS")
        assert info.state.messages >= 1
        await nc.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        for process in started:  # a failed assertion must not leave a site running
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.wait_for(process.wait(), 60)


def test_init_writes_a_config_for_containers(tmp_path):
    result = sinew(
        "init",
        "--data",
        str(tmp_path),
        "--site",
        "north",
        "--listen",
        "0.0.0.0",
        "--store-dir",
        "/data/jetstream",
    )
    assert result.returncode == 0, result.stderr
    config = (tmp_path / "nats" / "nats.conf").read_text()
    assert '"0.0.0.0:4222"' in config and '"0.0.0.0:8222"' in config
    assert '"store_dir": "/data/jetstream"' in config
    for service in CATALOGUE.services:
        env = (tmp_path / "secrets" / f"{service}.env").read_text()
        assert f"SINEW_NATS_USER={service}-north" in env
    assert (tmp_path / "secrets" / "provisioner.env").exists()
    tokens = json.loads((tmp_path / "secrets" / "tokens.json").read_text())
    raw = json.loads((tmp_path / "secrets" / "api-tokens.json").read_text())
    assert raw["operator"] not in json.dumps(tokens), "only token hashes are handed to services"
    # usage's patient-token key: secret, and never replaced, or known patients get new tokens.
    key = tmp_path / "secrets" / "patient-token-north.key"
    first = key.read_text()
    assert oct(key.stat().st_mode)[-3:] == "600" and len(first.strip()) == 64
    again = sinew("init", "--data", str(tmp_path), "--site", "north")
    assert again.returncode == 0, again.stderr
    assert key.read_text() == first


@pytest.mark.asyncio
async def test_dlq_commands_list_show_and_replay(nats_server, tmp_path):
    site = new_site()
    settings = settings_for("passthrough", site, nats_server, tmp_path)
    env = {"SINEW_NATS_URL": nats_server.url, "SINEW_DATA_DIR": str(tmp_path)}
    nc = await nats.connect(nats_server.url)
    async with running(sample.definition(), settings, sample.catalogue()):
        body = msgspec.json.encode({"site": site, "sample_id": "D", "value": "x", "amount": "1"})
        await publish(nc.jetstream(), sample.SUBMITTED_V1.subject(site), body, site=site)

        async def listed() -> bool:
            listing = await asinew("dlq", "list", "--site", site, env=env)
            return "Expected `int`, got `str`" in listing.stdout

        await eventually(listed, what="dead letter in `sinew dlq list`")
        rows = (await asinew("dlq", "list", "--site", site, "--json", env=env)).stdout.splitlines()
        dead = json.loads(rows[0])
        assert dead["service"] == "passthrough" and dead["cause"] == "invalid"
        shown = json.loads(
            (await asinew("dlq", "show", dead["id"], "--site", site, env=env)).stdout
        )
        assert shown["payload"].encode() == body
        fixed = tmp_path / "fixed.json"
        fixed.write_bytes(
            msgspec.json.encode({"site": site, "sample_id": "D", "value": 1, "amount": "1"})
        )
        replay = await asinew(
            "dlq",
            "replay",
            dead["id"],
            "--site",
            site,
            "--payload-file",
            str(fixed),
            "--by",
            "sre-on-call",
            env=env,
        )
        assert f"{dead['id']}" in replay.stdout and "applied" in replay.stdout
        assert "1 of 1 applied" in replay.stdout
        assert (await asinew("dlq", "list", "--site", site, env=env)).stdout.startswith(
            "no dead letters"
        )
        services = (await asinew("services", env=env)).stdout
        assert "passthrough" in services and site in services
        shown = json.loads((await asinew("services", "--json", env=env)).stdout)
        ours = next(s for s in shown if s["metadata"]["site"] == site)
        assert ours["status"]["open_dead_letters"] == 0
        assert ours["status"]["outbox_backlog"] == 0
        backlog = await asinew("backlog", "--json", env=env)
        assert any(r["consumer"] == f"passthrough-{site}" for r in json.loads(backlog.stdout))
    await nc.close()


def test_help_reads_like_a_manual():
    result = sinew("--help")
    assert result.returncode == 0
    for command in (
        "up",
        "init",
        "run",
        "provision",
        "contracts",
        "dlq",
        "tail",
        "backlog",
        "services",
    ):
        assert f"\n    {command}" in result.stdout
    assert "sinew dlq replay --cause" in result.stdout


@pytest.mark.asyncio
async def test_tail_reads_history_from_a_sequence_or_a_time(nats_server, tmp_path):
    site = new_site()
    env = {"SINEW_NATS_URL": nats_server.url, "SINEW_DATA_DIR": str(tmp_path)}
    nc = await nats.connect(nats_server.url)
    await provisioned(nats_server, sample.catalogue(), site, [])
    subject = sample.SUBMITTED_V1.subject(site)
    acks = []
    for n in range(3):
        body = msgspec.json.encode({"site": site, "sample_id": f"T{n}", "value": n, "amount": "1"})
        acks.append(
            await publish(nc.jetstream(), subject, body, site=site, correlation_id=f"case-{n}")
        )
    await nc.close()
    from_second = await asinew(
        "tail", subject, "--from-seq", str(acks[1].seq), "--count", "2", "--raw", env=env
    )
    lines = [json.loads(line) for line in from_second.stdout.splitlines()]
    assert [json.loads(line["data"])["sample_id"] for line in lines] == ["T1", "T2"]
    assert lines[0]["headers"]["sinew-correlation-id"] == "case-1"
    pretty = await asinew("tail", subject, "--since", "10m", "--count", "3", env=env)
    assert pretty.stdout.count(subject) == 3
    assert "correlation=case-0" in pretty.stdout
    bad = await asinew("tail", subject, "--since", "yesterday", env=env)
    assert "neither a time nor a span" in bad.stderr
