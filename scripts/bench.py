"""The Sinew benchmark: how close the runtime comes to the broker, and to the framework a Python
team would otherwise use.

One run starts its own nats-server twice (first with `sync_interval: always`, then with the
default) in a temporary folder and measures, on the same ~300-byte msgspec events:

  (a) raw nats-py: pipelined publish (publish_async, then every ack), and the loop
      fetch(100) -> publish_async one derived event -> ack(), with no state: the ceiling;
  (b) the Sinew pass-through sample service, as its own process, through its real path
      (decode, inbox + effect + outbox in one SQLite transaction, commit, ack, relay publish);
  (c) the same service written the way FastStream's documentation shows (JetStream PullSub,
      msgspec decoder, one aiosqlite write and commit per message, publish with stream=), as
      its own process; skipped, with the reason, when FastStream is not installed.

  (d) end to end, once after both passes: `sinew up --site north` as a subprocess (every
      service, nats-server with fsync on every write), the demo's master data and stock counts,
      then the demo day's routine usage lines (JSON, HL7 v2, FHIR) through the public ingress as
      the EHR user: events/s through all services, latency from the ingress publish to the
      canonical usage event and to replenishment's event, peak RSS of every process; --skip-e2e.

Throughput: N events are loaded into the stream first, then the consumer is started and timed
from its first delivery until all N derived events are stored. Latency: a publisher paced at a
fixed rate stamps each source event with its send time; a subscriber on the derived subject
takes the difference (one hop: source publish -> derived event received). Peak RSS is VmHWM
of each service process, and of this process for (a).

    .venv/bin/python scripts/bench.py [--json] [--count N] [--quick]

SINEW_BENCH_PROFILE=phases times each step of (b)'s path (fetch, decode, transaction, commit, ack,
relay) during its throughput run, and SINEW_BENCH_PROFILE=cprofile profiles its event loop; both
print to stderr, keep their raw output as sinew-bench-<pass>.json or .prof in the system temp
folder, and slow (b) down.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib.util
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import msgspec
import nats
from nats.js.errors import NotFoundError

from sinew.common.natsconfig import consumer_name
from sinew.common.provision import provision
from sinew.common.testing import sample
from sinew.common.testing.nats_server import NatsServer, free_port
from sinew.contracts.envelope import (
    CAUSATION_ID,
    CE_ID,
    MSG_ID,
    Envelope,
    derived_event_id,
    new_event_id,
    utc_now,
)

EVENT_BYTES = 300
FETCH_BATCH = 100
SENT_HEADER = "bench-sent"
IN_STREAM, OUT_STREAM = "INGRESS", "PASSTHROUGH"
SITES = {"raw": "bench-raw", "sinew": "bench-sinew", "faststream": "bench-fs"}
FASTSTREAM_DURABLE = "faststream-bench-fs"
FASTSTREAM_PIN = "faststream[nats]==0.7.8"
GOALS = {"b_over_a": 0.6, "b_over_c": 3.0, "p99_ms": 25.0, "rss_mb": 150.0}

ENCODER = msgspec.json.Encoder()
SUBMITTED = msgspec.json.Decoder(sample.SampleSubmitted)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- events ------------------------------------------------------------------------------------


def in_subject(site: str) -> str:
    return sample.SUBMITTED_V1.subject(site)


def out_subject(site: str) -> str:
    return sample.ACCEPTED.subject(site)


@functools.cache
def padding(site: str) -> str:
    bare = sample.SampleSubmitted(
        site=site, sample_id="S-00000000", value=0, amount=Decimal("1200.00"), note=""
    )
    return "x" * max(EVENT_BYTES - len(ENCODER.encode(bare)), 0)


def source_event(site: str, ordinal: int) -> tuple[bytes, dict[str, str]]:
    """One `sample submitted` document with the envelope an outside system sends."""
    payload = ENCODER.encode(
        sample.SampleSubmitted(
            site=site,
            sample_id=f"S-{ordinal:08d}",
            value=ordinal,
            amount=Decimal("1200.00"),
            note=padding(site),
        )
    )
    event_id = new_event_id()
    headers = Envelope(
        id=event_id,
        source=f"/bench/{site}",
        type=sample.SUBMITTED_V1.ce_type,
        time=utc_now(),
        site=site,
        correlation_id=event_id,
    ).headers()
    return payload, headers


def derived_event(data: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """What (a) and (c) publish for one source event: `sample accepted`, headers carried over
    with a new id and the causation id, so the latency subscriber reads every system alike."""
    submitted = SUBMITTED.decode(data)
    accepted = sample.SampleAccepted(
        site=submitted.site,
        sample_id=submitted.sample_id,
        value=submitted.value,
        amount=submitted.amount,
        accepted_at=datetime.now(UTC),
    )
    source_id = headers.get(CE_ID, "")
    event_id = derived_event_id(source_id, 0)
    outgoing = {**headers, CE_ID: event_id, MSG_ID: event_id, CAUSATION_ID: source_id}
    return ENCODER.encode(accepted), outgoing


async def preload(js, site: str, count: int) -> float:
    """Publish `count` events pipelined (publish_async, then wait for every ack); msgs/s."""
    events = [source_event(site, i) for i in range(count)]
    subject = in_subject(site)
    started = time.perf_counter()
    futures = [
        await js.publish_async(subject, payload, headers=headers) for payload, headers in events
    ]
    await asyncio.gather(*futures)
    return count / (time.perf_counter() - started)


# -- measurement helpers -----------------------------------------------------------------------


def peak_rss_mb(pid: int | str = "self") -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return round(int(found.group(1)) / 1024, 1) if found else None


def reset_peak_rss() -> None:
    # "5" resets VmHWM to the current RSS (Linux >= 4.0), so (a) is not charged for earlier work.
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU used by each named process between start() and stop(), as cores busy on average."""

    def __init__(self, pids: dict[str, int | str]) -> None:
        self.pids = pids
        self.begin: dict[str, float] = {}
        self.started = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()
        self.begin = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self.started
        return {
            f"{name}_cores": round((cpu_seconds(pid) - self.begin[name]) / wall, 2)
            for name, pid in self.pids.items()
        }


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def stored_count(js, subject: str) -> int:
    info = await js.stream_info(OUT_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


async def measure_consumer(
    js, durable: str, subject: str, count: int, process, log_path: Path, cpu: CpuMeter
) -> tuple[float, float]:
    """From the consumer's first delivery until `count` derived events are stored: (msgs/s,
    seconds from start-up to first delivery). `cpu` is started at the first delivery."""
    spawned = time.perf_counter()
    first_delivery = None
    deadline = spawned + max(120.0, count / 100)
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"service exited with {process.returncode}:\n{tail(log_path)}")
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{count} derived events not stored in time:\n{tail(log_path)}")
        if first_delivery is None:
            try:
                info = await js.consumer_info(IN_STREAM, durable)
                if info.delivered.consumer_seq:
                    first_delivery = time.perf_counter()
                    cpu.start()
            except NotFoundError:
                pass  # FastStream creates its consumer when it starts
            await asyncio.sleep(0.01)
            continue
        if await stored_count(js, subject) >= count:
            return count / (time.perf_counter() - first_delivery), first_delivery - spawned
        await asyncio.sleep(0.05)


@dataclass
class Latency:
    """A paced publisher of source events and a subscriber of the derived ones, on one
    connection of the benchmark's own."""

    nc: object
    js: object
    site: str
    sent: dict[str, float] = field(default_factory=dict)
    hops: dict[str, float] = field(default_factory=dict)

    async def run(self, rate: float, seconds: float) -> dict:
        received = asyncio.Event()
        total = int(rate * seconds)

        async def on_derived(msg) -> None:
            now = time.time()
            headers = msg.headers or {}
            cause = headers.get(CAUSATION_ID, "")
            # (a) and (c) carry the send-time header over; Sinew's envelope names the cause.
            stamp = headers.get(SENT_HEADER)
            sent = float(stamp) if stamp else self.sent.get(cause)
            if sent is not None and cause not in self.hops:
                self.hops[cause] = now - sent
                if len(self.hops) >= total:
                    received.set()

        subscription = await self.nc.subscribe(out_subject(self.site), cb=on_derived)
        await self.nc.flush()
        events = [source_event(self.site, 10_000_000 + i) for i in range(total)]
        loop = asyncio.get_running_loop()
        futures = []
        started = loop.time()
        for i, (payload, headers) in enumerate(events):
            delay = started + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            headers[SENT_HEADER] = repr(now)
            self.sent[headers[CE_ID]] = now
            futures.append(
                await self.js.publish_async(in_subject(self.site), payload, headers=headers)
            )
        offered = total / (loop.time() - started)
        await asyncio.gather(*futures)
        try:
            await asyncio.wait_for(received.wait(), timeout=30)
        except TimeoutError:
            pass
        await subscription.unsubscribe()
        hops_ms = [seconds * 1000 for seconds in self.hops.values()]
        return {
            "offered_msgs_per_s": round(offered, 1),
            "samples": len(hops_ms),
            "missing": total - len(hops_ms),
            "p50_ms": round(percentile(hops_ms, 0.50), 2) if hops_ms else None,
            "p99_ms": round(percentile(hops_ms, 0.99), 2) if hops_ms else None,
            "max_ms": round(max(hops_ms), 2) if hops_ms else None,
        }


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def spawn(command: list[str], env: dict[str, str], log_path: Path):
    with log_path.open("ab") as output:
        return await asyncio.create_subprocess_exec(*command, env=env, stdout=output, stderr=output)


async def stop_process(process) -> None:
    """SIGTERM by PID (the services drain and exit), SIGKILL if one hangs."""
    if process.returncode is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), timeout=30)
    except TimeoutError:
        os.kill(process.pid, signal.SIGKILL)
        await process.wait()


# -- (a) raw nats-py ---------------------------------------------------------------------------


async def raw_loop(js, subscription, until_count: int | None, stopping: asyncio.Event) -> int:
    """fetch(100) -> publish_async one derived event -> ack(), no state. Returns when
    `until_count` messages are done and every derived publish is acknowledged."""
    subject = out_subject(SITES["raw"])
    done = 0
    futures = []
    while not stopping.is_set() and (until_count is None or done < until_count):
        try:
            messages = await subscription.fetch(FETCH_BATCH, timeout=0.5)
        except TimeoutError:
            continue
        for message in messages:
            payload, headers = derived_event(message.data, message.headers or {})
            futures.append(await js.publish_async(subject, payload, headers=headers))
            await message.ack()
        done += len(messages)
        if len(futures) > 10_000:
            await asyncio.gather(*futures)
            futures.clear()
    await asyncio.gather(*futures)
    return done


async def bench_raw(server: NatsServer, count: int, rate: float, seconds: float) -> dict:
    site = SITES["raw"]
    service = await nats.connect(server.url, name="bench-raw-service")
    driver = await nats.connect(server.url, name="bench-driver")
    try:
        js = service.jetstream()
        publish_rate = await preload(driver.jetstream(), site, count)
        log(f"  (a) pipelined publish: {publish_rate:,.0f} msgs/s")
        gc.collect()
        reset_peak_rss()  # from here on, what the loop itself holds
        subscription = await js.pull_subscribe_bind(
            durable=consumer_name("passthrough", site), stream=IN_STREAM
        )
        stopping = asyncio.Event()
        cpu = CpuMeter({"loop_process": "self", "nats_server": server.process.pid})
        cpu.start()
        started = time.perf_counter()
        await raw_loop(js, subscription, count, stopping)
        loop_rate = count / (time.perf_counter() - started)
        cpu_used = cpu.stop()
        log(f"  (a) fetch -> publish -> ack loop: {loop_rate:,.0f} msgs/s")

        background = asyncio.create_task(raw_loop(js, subscription, None, stopping))
        latency = await Latency(driver, driver.jetstream(), site).run(rate, seconds)
        stopping.set()
        await background
        log(f"  (a) latency p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
        return {
            "publish_msgs_per_s": round(publish_rate, 1),
            "msgs_per_s": round(loop_rate, 1),
            **latency,
            "rss_mb": peak_rss_mb(),
            "rss_of": "the benchmark process (it runs the loop)",
            "cpu_during_throughput": cpu_used,
        }
    finally:
        await service.close()
        await driver.close()


# -- (b) the Sinew runtime ---------------------------------------------------------------------


def scrape_metrics(port: int) -> dict:
    """Where the service's own time went, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0]
        if metric.endswith(("_sum", "_count", "_total")):
            sums[metric] = sums.get(metric, 0.0) + float(value)
    batches = sums.get("sinew_batch_seconds_count", 0.0)
    handled = sums.get("sinew_handler_seconds_count", 0.0)
    return {
        "batches": int(batches),
        "mean_batch_size": round(handled / batches, 1) if batches else None,
        "transaction_seconds_total": round(sums.get("sinew_batch_seconds_sum", 0.0), 3),
        "mean_transaction_ms": (
            round(1000 * sums["sinew_batch_seconds_sum"] / batches, 2) if batches else None
        ),
        "handler_seconds_total": round(sums.get("sinew_handler_seconds_sum", 0.0), 3),
        "events_published": int(sums.get("sinew_events_published_total", 0.0)),
    }


# -- diagnosing (b): SINEW_BENCH_PROFILE=phases|cprofile ---------------------------------------
#
# The service then runs from this file (`--profiled-sample`), with the runtime's own code
# wrapped here, never edited. On SIGUSR1, sent when the throughput run ends, it writes what it
# measured, so the latency run that follows does not blur the figures.


class PhaseClock:
    """Seconds spent awaiting each step of the runtime's path, on the event loop thread."""

    def __init__(self) -> None:
        self.steps: dict[str, list[float]] = {}
        self.first = self.last = None

    def add(self, step: str, seconds: float, items: int = 1) -> None:
        entry = self.steps.setdefault(step, [0, 0.0, 0])
        entry[0] += 1
        entry[1] += seconds
        entry[2] += items

    def report(self) -> dict:
        window = (self.last - self.first) if self.first and self.last else None
        return {
            "window_s": round(window, 3) if window else None,
            "steps": {
                step: {
                    "calls": calls,
                    "items": items,
                    "total_s": round(total, 3),
                    "mean_ms": round(1000 * total / calls, 3),
                    "share_of_window": round(total / window, 3) if window else None,
                }
                for step, (calls, total, items) in sorted(self.steps.items())
            },
        }


def instrument(clock: PhaseClock) -> None:
    from nats.js.client import JetStreamContext

    from sinew.common import actor, outbox, store

    def timed_async(owner, name: str, step: str, items=None) -> None:
        original = getattr(owner, name)

        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                ended = time.perf_counter()
                clock.add(step, ended - started, items(args) if items else 1)

        setattr(owner, name, wrapper)

    def timed_sync(owner, name: str, step: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock.add(step, time.perf_counter() - started)

        setattr(owner, name, wrapper)

    original_run = store.Store.run

    async def run(self, fn, *args):
        # One aiosqlite thread serves the mailbox and the relay: time the wait in its queue
        # apart from the work, and the commit apart from the statements.
        label = getattr(args[0], "__name__", "?") if fn is store._in_transaction else fn.__name__
        work: dict[str, float] = {}

        def on_thread(conn, *inner):
            started = time.perf_counter()
            work["start"] = started
            if fn is store._in_transaction:
                body, rest = inner[0], inner[1:]

                def statements(conn, *more):
                    begun = time.perf_counter()
                    try:
                        return body(conn, *more)
                    finally:
                        work["statements"] = time.perf_counter() - begun

                result = fn(conn, statements, *rest)
            else:
                result = fn(conn, *inner)
            work["total"] = time.perf_counter() - started
            return result

        queued = time.perf_counter()
        result = await original_run(self, on_thread, *args)
        done = time.perf_counter()
        clock.add(f"db {label}: queued behind other db work", work["start"] - queued)
        clock.add(f"db {label}: on the db thread", work["total"])
        if "statements" in work:
            clock.add(f"db {label}: statements", work["statements"])
            clock.add(f"db {label}: BEGIN+COMMIT (fsync)", work["total"] - work["statements"])
        clock.add(f"db {label}: back on the event loop", done - queued - work["total"])
        return result

    store.Store.run = run

    original_handle = actor.Mailbox.handle

    async def handle(self, messages):
        now = time.perf_counter()
        clock.first = clock.first or now
        try:
            return await original_handle(self, messages)
        finally:
            clock.last = time.perf_counter()
            clock.add(
                "mailbox handle (decode, transaction, settle)", clock.last - now, len(messages)
            )

    actor.Mailbox.handle = handle
    timed_sync(actor.Mailbox, "_decode", "mailbox decode (per message)")
    timed_async(actor.Mailbox, "_settle", "mailbox settle: metrics + ack (per message)")
    original_fetch = JetStreamContext.PullSubscription.fetch

    async def fetch(self, *args, **kwargs):
        started = time.perf_counter()
        messages = await original_fetch(self, *args, **kwargs)  # idle timeouts are not counted
        clock.add("mailbox fetch", time.perf_counter() - started, len(messages))
        return messages

    JetStreamContext.PullSubscription.fetch = fetch
    original_unpublished = outbox._unpublished

    @functools.wraps(original_unpublished)
    def unpublished(conn, *args):
        rows = original_unpublished(conn, *args)
        clock.add("relay rows read (items = rows)", 0.0, len(rows))
        return rows

    outbox._unpublished = unpublished
    timed_async(outbox.OutboxRelay, "_send_round", "relay send round (read rows, publish_async)")
    timed_async(JetStreamContext, "publish_async", "relay publish_async call (per event)")


def profiled_sample(mode: str, output: str) -> None:
    from sinew.common.testing import sample as sample_module

    sys.argv[1:] = []
    if mode == "cprofile":
        import cProfile

        profiler = cProfile.Profile()

        def snapshot(*_):
            profiler.disable()
            profiler.dump_stats(output)

        signal.signal(signal.SIGUSR1, snapshot)
        profiler.enable()
        sample_module.main()
        return
    clock = PhaseClock()
    instrument(clock)
    signal.signal(
        signal.SIGUSR1, lambda *_: Path(output).write_text(json.dumps(clock.report(), indent=2))
    )
    sample_module.main()


def print_profile(path: Path) -> None:
    import pstats

    for order in ("tottime", "cumulative"):
        log(f"--- cProfile of (b) during the throughput run, by {order}: {path}")
        stats = pstats.Stats(str(path), stream=sys.stderr)
        stats.sort_stats(order).print_stats(30)


def print_phases(phases: dict) -> None:
    log(f"--- (b) phases during the throughput run (window {phases['window_s']} s)")
    log(f"  {'step':62}{'calls':>8}{'items':>8}{'total s':>9}{'mean ms':>9}{'share':>7}")
    for step, row in phases["steps"].items():
        log(
            f"  {step:62}{row['calls']:>8}{row['items']:>8}{row['total_s']:>9.3f}"
            f"{row['mean_ms']:>9.3f}{row['share_of_window'] or 0:>7.2f}"
        )


async def bench_sinew(
    server: NatsServer, workdir: Path, count: int, rate: float, seconds: float, pass_name: str
) -> dict:
    site = SITES["sinew"]
    nc = await nats.connect(server.url, name="bench-driver")
    process = None
    log_path = workdir / "sinew-passthrough.log"
    http_port = free_port()
    profile_mode = os.environ.get("SINEW_BENCH_PROFILE", "")
    if profile_mode not in ("", "phases", "cprofile"):
        raise SystemExit("SINEW_BENCH_PROFILE is phases or cprofile")
    suffix = "prof" if profile_mode == "cprofile" else "json"
    profile_path = Path(tempfile.gettempdir()) / f"sinew-bench-{pass_name}.{suffix}"
    try:
        js = nc.jetstream()
        await preload(js, site, count)
        env = {
            **os.environ,
            "SINEW_SITE": site,
            "SINEW_NATS_URL": server.url,
            "SINEW_DATA_DIR": str(workdir / "sinew-data"),
            "SINEW_NATS_MONITOR_URL": server.monitor_url,
            "SINEW_HTTP_PORT": str(http_port),
            "SINEW_REQUIRE_SYNC_ALWAYS": "1" if pass_name == "sync_always" else "0",
        }
        command = [sys.executable, "-m", "sinew.common.testing.sample"]
        if profile_mode:
            profile_path.unlink(missing_ok=True)
            command = [sys.executable, __file__, "--profiled-sample", profile_mode]
            command.append(str(profile_path))
        process = await spawn(command, env, log_path)
        durable = consumer_name("passthrough", site)
        cpu = CpuMeter({"service": process.pid, "nats_server": server.process.pid})
        throughput, startup = await measure_consumer(
            js, durable, out_subject(site), count, process, log_path, cpu
        )
        cpu_used = cpu.stop()
        log(f"  (b) Sinew pass-through: {throughput:,.0f} msgs/s (started in {startup:.1f} s)")
        result = {
            "msgs_per_s": round(throughput, 1),
            "startup_s": round(startup, 2),
            "cpu_during_throughput": cpu_used,
        }
        result["internals_during_throughput"] = await asyncio.to_thread(scrape_metrics, http_port)
        if profile_mode:
            os.kill(process.pid, signal.SIGUSR1)
            await asyncio.sleep(1.0)
            if profile_mode == "cprofile":
                print_profile(profile_path)
            else:
                result["phases"] = json.loads(profile_path.read_text())
                print_phases(result["phases"])
            result["profiled"] = f"{profile_mode} (figures slowed by the instrumentation)"
        latency = await Latency(nc, js, site).run(rate, seconds)
        log(f"  (b) latency p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
        return {**result, **latency, "rss_mb": peak_rss_mb(process.pid)}
    finally:
        if process is not None:
            await stop_process(process)
        await nc.close()


# -- (c) FastStream, as its documentation shows ------------------------------------------------


def faststream_unavailable() -> str | None:
    if importlib.util.find_spec("faststream") is None:
        return f"FastStream is not installed (.venv/bin/pip install '{FASTSTREAM_PIN}')"
    # Imported in a child process, so that this process's RSS, reported for (a), stays its own.
    check = subprocess.run(
        [sys.executable, "-c", "import faststream.nats, aiosqlite"],
        capture_output=True,
        text=True,
    )
    if check.returncode:
        last = (check.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"FastStream cannot be imported: {last}"
    return None


def faststream_service() -> None:
    """The pass-through service as a FastStream app: a JetStream pull subscriber, a msgspec
    decoder, one aiosqlite write and commit per message, the derived event published with
    `stream=` (which waits for JetStream's ack), acked by FastStream when the handler returns."""
    import aiosqlite
    from faststream import FastStream
    from faststream.nats import JStream, NatsBroker, PullSub
    from faststream.nats.annotations import NatsMessage

    site = os.environ["BENCH_SITE"]
    # FastStream logs "Received" and "Processed" for every message at INFO by default;
    # --faststream-quiet moves those lines to DEBUG, below the app's level.
    quiet = os.environ.get("BENCH_FS_QUIET") == "1"
    broker = NatsBroker(
        os.environ["BENCH_NATS_URL"], log_level=logging.DEBUG if quiet else logging.INFO
    )
    app = FastStream(broker)
    database: list[aiosqlite.Connection] = []

    async def decode_submitted(msg):
        return SUBMITTED.decode(msg.body)

    @app.on_startup
    async def open_database() -> None:
        db = await aiosqlite.connect(os.environ["BENCH_DB"])
        # The same durability as Sinew's store: WAL, and a commit that survives power loss.
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute(sample.MIGRATIONS[0].replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        await db.commit()
        database.append(db)

    @app.after_shutdown
    async def close_database() -> None:
        for db in database:
            await db.close()

    @broker.subscriber(
        in_subject(site),
        stream=JStream(name=IN_STREAM, declare=False),
        durable=FASTSTREAM_DURABLE,
        pull_sub=PullSub(batch_size=int(os.environ["BENCH_FS_BATCH"])),
        decoder=decode_submitted,
    )
    async def accept(body, message: NatsMessage) -> None:
        db = database[0]
        await db.execute(
            "INSERT INTO samples VALUES (?, ?, 1) ON CONFLICT(sample_id)"
            " DO UPDATE SET applied = applied + 1, value = excluded.value",
            (body.sample_id, body.value),
        )
        await db.commit()
        payload, headers = derived_event(message.body, message.headers)
        await broker.publish(payload, out_subject(site), headers=headers, stream=OUT_STREAM)

    asyncio.run(app.run())


async def bench_faststream(
    server: NatsServer, workdir: Path, count: int, rate: float, seconds: float, options
) -> dict:
    site = SITES["faststream"]
    nc = await nats.connect(server.url, name="bench-driver")
    process = None
    log_path = workdir / "faststream.log"
    try:
        js = nc.jetstream()
        await preload(js, site, count)
        env = {
            **os.environ,
            "BENCH_SITE": site,
            "BENCH_NATS_URL": server.url,
            "BENCH_DB": str(workdir / "faststream.sqlite"),
            "BENCH_FS_BATCH": str(options.faststream_batch),
            "BENCH_FS_QUIET": "1" if options.faststream_quiet else "0",
        }
        process = await spawn([sys.executable, __file__, "--faststream-service"], env, log_path)
        cpu = CpuMeter({"service": process.pid, "nats_server": server.process.pid})
        throughput, startup = await measure_consumer(
            js, FASTSTREAM_DURABLE, out_subject(site), count, process, log_path, cpu
        )
        cpu_used = cpu.stop()
        log(f"  (c) FastStream: {throughput:,.0f} msgs/s (started in {startup:.1f} s)")
        latency = await Latency(nc, js, site).run(rate, seconds)
        log(f"  (c) latency p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
        return {
            "msgs_per_s": round(throughput, 1),
            "startup_s": round(startup, 2),
            **latency,
            "rss_mb": peak_rss_mb(process.pid),
            "cpu_during_throughput": cpu_used,
            "pull_batch_size": options.faststream_batch,
            "per_message_logging": not options.faststream_quiet,
        }
    finally:
        if process is not None:
            await stop_process(process)
        await nc.close()


# -- one pass ----------------------------------------------------------------------------------


PASSES = [
    ("sync_always", True, "nats-server with sync_interval: always (fsync every write)"),
    ("default", False, "nats-server with the default sync (acks before fsync)"),
]


async def run_pass(
    server: NatsServer, workdir: Path, name: str, count: int, rate: float, seconds: float, options
) -> dict:
    nc = await nats.connect(server.url, name="bench-provisioner")
    try:
        # The raw loop binds to a consumer of the very configuration Sinew's mailbox gets.
        await provision(
            nc.jetstream(), sample.catalogue(), [SITES["raw"], SITES["sinew"]], ["passthrough"]
        )
    finally:
        await nc.close()
    results: dict = {"raw": await bench_raw(server, count, rate, seconds)}
    results["sinew"] = await bench_sinew(server, workdir, count, rate, seconds, name)
    skipped = faststream_unavailable()
    if skipped:
        log(f"  (c) skipped: {skipped}")
        results["faststream"] = {"skipped": skipped}
    else:
        results["faststream"] = await bench_faststream(
            server, workdir, count, rate, seconds, options
        )
    a, b = results["raw"]["msgs_per_s"], results["sinew"]["msgs_per_s"]
    c = results["faststream"].get("msgs_per_s")
    results["ratios"] = {
        "b_over_a": round(b / a, 3) if a else None,
        "b_over_c": round(b / c, 3) if c else None,
    }
    ratios, sinew = results["ratios"], results["sinew"]
    results["goals_met"] = {
        "b_over_a": ratios["b_over_a"] is not None and ratios["b_over_a"] >= GOALS["b_over_a"],
        # None when (c) was skipped: nothing to compare with.
        "b_over_c": None if ratios["b_over_c"] is None else ratios["b_over_c"] >= GOALS["b_over_c"],
        "p99_ms": sinew["p99_ms"] is not None and sinew["p99_ms"] <= GOALS["p99_ms"],
        "rss_mb": sinew["rss_mb"] is not None and sinew["rss_mb"] < GOALS["rss_mb"],
    }
    return results


# -- (d) end to end: the demo simulator against a whole site -----------------------------------

E2E_SITE = "north"
E2E_SEED = 7
# The hops measured, by the causation chain: an EHR usage line on the public ingress, the usage
# service's canonical event on USAGE, and any event replenishment stores because of that usage.
E2E_USAGE_CHANNEL = "usage.procedure-usage.recorded.v1"
E2E_SETUP_PHASES = ("master data", "stock counts")
E2E_SOURCE_STREAMS = {"INGRESS", "CLINICAL_INGRESS", "OBSERVABILITY"}


def free_port_block(size: int = 10) -> int:
    """A base port with `size` free ports after it (`sinew up` puts service n on base + n)."""
    import random
    import socket

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


def child_pids(parent: int) -> dict[str, int]:
    """The processes `sinew up` started, by name (nats-server, or the service it runs)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) != parent:
            continue
        words = [w.decode(errors="replace") for w in argv if w]
        if "run" in words and words.index("run") + 1 < len(words):
            name = words[words.index("run") + 1]
        else:
            name = Path(words[0]).name if words else entry.name
        found[name] = int(entry.name)
    return found


async def read_stored(js, subject: str, since: datetime) -> list[tuple[str, str, float]]:
    """(event id, causation id, stored at) of every message on `subject` stored since `since`."""
    from nats.js.api import ConsumerConfig, DeliverPolicy

    found: list[tuple[str, str, float]] = []
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since.isoformat()
    )
    sub = await js.subscribe(subject, ordered_consumer=True, config=config)
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                return found
            headers = msg.headers or {}
            stored = msg.metadata.timestamp
            found.append(
                (headers.get(CE_ID, ""), headers.get(CAUSATION_ID, ""), stored.timestamp())
            )
    finally:
        await sub.unsubscribe()


def latency_summary(values_ms: list[float]) -> dict:
    return {
        "events": len(values_ms),
        "p50_ms": round(percentile(values_ms, 0.50), 1) if values_ms else None,
        "p95_ms": round(percentile(values_ms, 0.95), 1) if values_ms else None,
        "p99_ms": round(percentile(values_ms, 0.99), 1) if values_ms else None,
        "max_ms": round(max(values_ms), 1) if values_ms else None,
    }


async def e2e_load(
    data: Path, nats_url: str, urls: dict, usages: int, cpu_of: Callable[[], dict[str, float]]
) -> dict:
    from dataclasses import replace

    from sinew.cli import demo
    from sinew.cli.operate import connect_operator
    from sinew.contracts import CATALOGUE

    target = demo.Target(nats_url, data, urls)
    await demo.ready(target)
    plan = demo.plan_day(E2E_SEED, usages, (E2E_SITE,))
    setup = [phase for phase in plan if phase.name in E2E_SETUP_PHASES]
    clinical = next(phase for phase in plan if phase.name == "the clinical day")
    # The routine usage lines (JSON, HL7 v2 and FHIR, shuffled), each with a known event id.
    lines = [
        replace(step, event_id=new_event_id())
        for step in clinical.steps
        if isinstance(step, demo.Send) and step.kinds in demo.ROUTINE
    ]
    sent_at: dict[str, float] = {}
    async with demo.Player(target) as player:
        started = time.perf_counter()
        await demo.play(player, setup, say=lambda *_, **__: None)
        log(f"  (d) master data and stock counts played in {time.perf_counter() - started:.1f}s")
        await player.js(f"ehr-{E2E_SITE}")  # connected before the clock starts
        gate = asyncio.Semaphore(64)

        async def one(step) -> None:
            async with gate:
                sent_at[step.event_id] = time.time()
                await player.publish(step)

        since = datetime.now(UTC)
        cpu_before = cpu_of()
        first = time.time()
        await asyncio.gather(*(one(step) for step in lines))
        published = time.time()
        quiet = await demo.drained(nats_url, data, within=300.0)
        burst_seconds = time.time() - first
        cpu_after = cpu_of()
        refused = sum(player.refused.values())

    nc = await connect_operator(nats_url, data, None, None)
    try:
        js = nc.jetstream()
        # The last derived event any domain service stored: the end of the run.
        last = first
        for stream in CATALOGUE.streams:
            if stream.name in E2E_SOURCE_STREAMS:
                continue
            info = await js.stream_info(stream.name)
            if info.state.last_seq:
                message = await js.get_msg(stream.name, info.state.last_seq)
                if message.time and message.time.timestamp() > first:
                    last = max(last, message.time.timestamp())
        usage_subject = CATALOGUE.channel(E2E_USAGE_CHANNEL).subject(E2E_SITE)
        recorded = await read_stored(js, usage_subject, since)
        # The next hop: every event replenishment stores because of one of these usages (its
        # on-hand change, and a signal where stock falls below the reorder point).
        adjusted = await read_stored(js, f"sinew.replenishment.{E2E_SITE}.>", since)
    finally:
        await nc.close()
    # A clinical sender's event id may hold patient data, so what leaves the usage service names
    # it by a stable pseudonym (sinew.common.actor._pseudonym): follow that link.
    origin = {event_id: event_id for event_id in sent_at}
    for event_id in sent_at:
        origin[str(uuid.uuid5(uuid.NAMESPACE_OID, f"sinew-clinical:{event_id}"))] = event_id
    to_usage, usage_source, to_adjusted = [], {}, []
    for event_id, cause, stored in recorded:
        if cause in origin:
            to_usage.append((stored - sent_at[origin[cause]]) * 1000)
            usage_source[event_id] = origin[cause]
    for _, cause, stored in adjusted:
        if cause in usage_source:
            to_adjusted.append((stored - sent_at[usage_source[cause]]) * 1000)
    seconds = last - first
    # Which process the burst kept busiest: the one that limits events/s through all services.
    cores = {
        name: round((cpu_after[name] - cpu_before[name]) / burst_seconds, 2)
        for name in sorted(cpu_after)
        if name in cpu_before
    }
    return {
        "cores_busy_during_burst": dict(sorted(cores.items(), key=lambda kv: -kv[1])),
        "usage_lines": len(lines),
        "refused": refused,
        "drained": quiet,
        "publish_msgs_per_s": round(len(lines) / (published - first), 1),
        "seconds": round(seconds, 2),
        "events_per_s": round(len(lines) / seconds, 1) if seconds > 0 else None,
        "canonical_usage_events": len(to_usage),
        "ingress_to_usage_recorded": latency_summary(to_usage),
        "ingress_to_replenishment": latency_summary(to_adjusted),
    }


def bench_end_to_end(usages: int) -> dict:
    """`sinew up` for one site as its own process; the demo's master data, then `usages` routine
    usage lines through the public ingress as the EHR; every figure from the site's streams."""
    workdir = Path(tempfile.mkdtemp(prefix="sinew-bench-e2e-"))
    data, log_path = workdir / "data", workdir / "up.log"
    nats_port, monitor_port, base = free_port(), free_port(), free_port_block()
    from sinew.services import built

    services = built()
    urls = {
        (service, E2E_SITE): f"http://127.0.0.1:{base + index + 1}"
        for index, service in enumerate(services)
    }
    argv = [sys.executable, "-m", "sinew.cli.main", "up", "--data", str(data)]
    argv += ["--site", E2E_SITE, "--nats-port", str(nats_port)]
    argv += ["--monitor-port", str(monitor_port), "--http-base-port", str(base)]
    log(f"End to end: sinew up --site {E2E_SITE}, {usages} usage lines")
    output = log_path.open("wb")
    process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
    try:

        def cpu_of() -> dict[str, float]:
            return {name: cpu_seconds(pid) for name, pid in child_pids(process.pid).items()}

        result = asyncio.run(e2e_load(data, f"nats://127.0.0.1:{nats_port}", urls, usages, cpu_of))
        result["peak_rss_mb"] = {
            name: peak_rss_mb(pid) for name, pid in sorted(child_pids(process.pid).items())
        }
        result["peak_rss_mb"]["sinew up (supervisor)"] = peak_rss_mb(process.pid)
        return result
    except Exception as error:
        log(f"  (d) failed: {error!r}\n{tail(log_path)}")
        return {"skipped": f"failed: {error!r}"}
    finally:
        process.send_signal(signal.SIGINT)  # `sinew up` stops its children and nats-server
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()
        shutil.rmtree(workdir, ignore_errors=True)


def e2e_table(result: dict) -> list[str]:
    if "skipped" in result:
        return ["", f"(d) end to end: {result['skipped']}"]
    lines = [
        "",
        f"(d) end to end: sinew up --site {E2E_SITE} (sync_interval: always), "
        f"{result['usage_lines']} usage lines (JSON, HL7 v2, FHIR) as the EHR",
        f"  published at {cell(result['publish_msgs_per_s'])} msg/s; through all services "
        f"{cell(result['events_per_s'])} events/s ({result['seconds']} s from first publish "
        f"to the last derived event stored){'' if result['drained'] else '  NOT drained'}",
        f"  {'latency from the ingress publish to':44}{'events':>9}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}",
    ]
    for key, label in (
        ("ingress_to_usage_recorded", "ProcedureUsageRecorded stored on USAGE"),
        ("ingress_to_replenishment", "the REPLENISHMENT event it caused"),
    ):
        hop = result[key]
        lines.append(
            f"  {label:44}{hop['events']:>9}{cell(hop['p50_ms'], 1):>9}"
            f"{cell(hop['p95_ms'], 1):>9}{cell(hop['p99_ms'], 1):>9}"
        )
    busy = result["cores_busy_during_burst"].items()
    lines += [
        "  cores busy during the burst: " + ", ".join(f"{name} {cores}" for name, cores in busy),
        "  peak RSS MB: "
        + ", ".join(f"{name} {cell(mb, 1)}" for name, mb in result["peak_rss_mb"].items()),
    ]
    return lines


# -- output ------------------------------------------------------------------------------------


def cell(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(report: dict) -> str:
    lines = [
        f"Sinew benchmark  {report['date']}  {report['machine']['cpus']} CPUs  "
        f"N={report['count']} events of ~{report['event_bytes']} bytes; latency at "
        f"{report['latency_rate']:g} msg/s for {report['latency_seconds']:g} s",
    ]
    for name, _, label in PASSES:
        result = report["passes"].get(name)
        if result is None:
            continue
        raw, sinew, fast = result["raw"], result["sinew"], result["faststream"]
        lines += [
            "",
            f"Pass {name}: {label}",
            f"  {'':44}{'msgs/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'RSS MB':>9}",
            f"  {'(a) raw nats-py pipelined publish':44}{cell(raw['publish_msgs_per_s']):>9}",
            f"  {'(a) raw fetch(100) -> publish -> ack()':44}{cell(raw['msgs_per_s']):>9}"
            f"{cell(raw['p50_ms'], 1):>9}{cell(raw['p99_ms'], 1):>9}{cell(raw['rss_mb'], 1):>9}",
            f"  {'(b) Sinew pass-through service':44}{cell(sinew['msgs_per_s']):>9}"
            f"{cell(sinew['p50_ms'], 1):>9}{cell(sinew['p99_ms'], 1):>9}"
            f"{cell(sinew['rss_mb'], 1):>9}",
        ]
        if "skipped" in fast:
            lines.append(f"  (c) FastStream: skipped: {fast['skipped']}")
        else:
            name_c = f"(c) FastStream PullSub({fast['pull_batch_size']}) + aiosqlite"
            if not fast["per_message_logging"]:
                name_c += ", quiet"
            lines.append(
                f"  {name_c:44}{cell(fast['msgs_per_s']):>9}"
                f"{cell(fast['p50_ms'], 1):>9}{cell(fast['p99_ms'], 1):>9}"
                f"{cell(fast['rss_mb'], 1):>9}"
            )
        ratios, met = result["ratios"], result["goals_met"]
        mark = {goal: {True: "met", False: "NOT met", None: "n/a"}[ok] for goal, ok in met.items()}
        lines.append(
            f"  b/a = {cell(ratios['b_over_a'], 2)} (goal >= {GOALS['b_over_a']}: "
            f"{mark['b_over_a']})   b/c = {cell(ratios['b_over_c'], 2)} (goal >= "
            f"{GOALS['b_over_c']:g}: {mark['b_over_c']})   b p99 <= {GOALS['p99_ms']:g} ms: "
            f"{mark['p99_ms']}   b RSS < {GOALS['rss_mb']:g} MB: {mark['rss_mb']}"
        )
        internals = sinew.get("internals_during_throughput") or {}
        if internals.get("batches"):
            lines.append(
                f"  (b) inside: {internals['batches']} batches of {internals['mean_batch_size']}"
                f" on average, {internals['mean_transaction_ms']} ms per batch transaction"
            )
    if "end_to_end" in report:
        lines += e2e_table(report["end_to_end"])
    lines += ["", "Goals apply to the sync_interval: always pass; the default pass is context."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--count", type=int, help="events per throughput run (default 20000)")
    parser.add_argument("--quick", action="store_true", help="3000 events, 5 s of latency")
    parser.add_argument("--rate", type=float, default=500.0, help="latency offered load, msg/s")
    parser.add_argument("--seconds", type=float, help="latency run length (default 10, quick 5)")
    parser.add_argument(
        "--faststream-batch",
        type=int,
        default=FETCH_BATCH,
        help=f"PullSub batch_size of (c) (default {FETCH_BATCH}, as (a) fetches)",
    )
    parser.add_argument(
        "--faststream-quiet",
        action="store_true",
        help="turn off FastStream's default per-message INFO logging in (c)",
    )
    parser.add_argument(
        "--e2e-usages", type=int, help="usage lines of (d) end to end (default 2000, quick 300)"
    )
    parser.add_argument("--skip-e2e", action="store_true", help="leave out (d) end to end")
    parser.add_argument("--faststream-service", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profiled-sample", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.faststream_service:
        faststream_service()
        return
    if args.profiled_sample:
        profiled_sample(*args.profiled_sample)
        return
    count = args.count or (3000 if args.quick else 20000)
    seconds = args.seconds or (5.0 if args.quick else 10.0)
    report = {
        "date": datetime.now().date().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "count": count,
        "event_bytes": len(source_event(SITES["sinew"], 0)[0]),
        "fetch_batch": FETCH_BATCH,
        "latency_rate": args.rate,
        "latency_seconds": seconds,
        "goals": GOALS,
        "passes": {},
    }
    for name, sync_always, label in PASSES:
        workdir = Path(tempfile.mkdtemp(prefix=f"sinew-bench-{name}-"))
        server = NatsServer(workdir / "nats", sync_always=sync_always)
        try:
            log(f"Pass {name}: {label}")
            server.start()
            report["passes"][name] = asyncio.run(
                run_pass(server, workdir, name, count, args.rate, seconds, args)
            )
        finally:
            server.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    if not args.skip_e2e:
        report["end_to_end"] = bench_end_to_end(args.e2e_usages or (300 if args.quick else 2000))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table(report))


if __name__ == "__main__":
    main()
