"""Operator commands that talk to a running site over NATS: dead letters, streams, services."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from sinew.common.natsconfig import OPERATOR, admin_subject, api_subject
from sinew.common.telemetry import trace_id_of
from sinew.contracts import CATALOGUE
from sinew.contracts.envelope import CE_TYPE, CORRELATION_ID, TRACEPARENT


async def connect_operator(url: str, data: Path, user: str | None, password: str | None):
    credentials = data / "secrets" / "nats-credentials.json"
    return await connect_as(url, credentials, OPERATOR, user, password)


async def connect_as(
    url: str | list[str],
    credentials: Path,
    default_user: str,
    user: str | None,
    password: str | None,
):
    """As the user given, else as `default_user` with its password from the credentials file."""
    kept = _passwords(credentials) if user is None else None
    if kept is not None:
        user, password = default_user, kept.get(default_user)
    return await nats.connect(
        url,
        user=user,
        password=password,
        name="sinew-cli",
        inbox_prefix=f"_INBOX_{user}" if user else "_INBOX",
        connect_timeout=5,
        max_reconnect_attempts=2,
    )


def _passwords(credentials: Path) -> dict | None:
    return json.loads(credentials.read_text()) if credentials.exists() else None


async def discover(nc, quiet_after: float = 0.7) -> list[dict]:
    """Every service answering $SRV.INFO, with its site from the metadata."""
    inbox = nc.new_inbox()
    found: list[dict] = []
    sub = await nc.subscribe(inbox, cb=None)
    await nc.publish("$SRV.INFO", b"", reply=inbox)
    try:
        while True:
            message = await sub.next_msg(timeout=quiet_after)
            found.append(json.loads(message.data))
    except (TimeoutError, nats.errors.TimeoutError):
        pass
    await sub.unsubscribe()
    return sorted(found, key=lambda s: (s.get("metadata", {}).get("site", ""), s["name"]))


async def admin_request(
    nc, site: str, service: str, verb: str, body: dict, wait: float = 30
) -> dict:
    reply = await nc.request(
        f"{admin_subject(site, service)}.{verb}", json.dumps(body).encode(), timeout=wait
    )
    if reply.headers and reply.headers.get("Nats-Service-Error-Code"):
        raise SystemExit(f"{service}@{site}: {reply.headers.get('Nats-Service-Error')}")
    return json.loads(reply.data)


async def targets(nc, site: str | None, service: str | None) -> list[tuple[str, str]]:
    if site and service:
        return [(site, service)]
    found = [(s.get("metadata", {}).get("site", ""), s["name"]) for s in await discover(nc)]
    return [
        (si, sv) for si, sv in found if (not site or si == site) and (not service or sv == service)
    ]


async def dlq_list(nc, site, service, status, cause, reason, as_json) -> None:
    rows = []
    for si, sv in await targets(nc, site, service):
        answer = await admin_request(
            nc,
            si,
            sv,
            "dlq.list",
            {"status": status, "cause": cause, "reason": reason, "limit": 500},
        )
        rows += [{"site": si, "service": sv, **item} for item in answer["items"]]
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    if not rows:
        print("no dead letters" + (f" with status {status}" if status else ""))
        return
    print(f"{'ID':<13} {'SITE':<8} {'SERVICE':<14} {'CAUSE':<17} {'RECORDED':<20} REASON")
    for row in rows:
        print(
            f"{row['id']:<13} {row['site']:<8} {row['service']:<14} {row['cause']:<17} "
            f"{row['recorded_at'][:19]:<20} {row['reason'][:100]}"
        )
    print(f"\n{len(rows)} dead letter(s). `sinew dlq show ID` for the original bytes and headers.")


async def dlq_show(nc, site, service, dead_letter_id) -> None:
    for si, sv in await targets(nc, site, service):
        answer = await nc.request(
            f"{admin_subject(si, sv)}.dlq.show",
            json.dumps({"id": dead_letter_id}).encode(),
            timeout=10,
        )
        if answer.headers and answer.headers.get("Nats-Service-Error-Code"):
            continue
        print(json.dumps({"site": si, "service": sv, **json.loads(answer.data)}, indent=2))
        return
    raise SystemExit(f"no dead letter {dead_letter_id}")


async def dlq_replay(nc, site, service, ids, cause, reason, payload: bytes | None, by) -> None:
    body: dict = {"by": by}
    if ids:
        body["ids"] = ids
    elif cause or reason:
        body |= {"cause": cause, "reason": reason}
    else:
        raise SystemExit("replay needs dead letter ids, or --cause/--reason for a bulk replay")
    if payload is not None:
        body["payload_base64"] = base64.b64encode(payload).decode()
    results = []
    all_targets = await targets(nc, site, service)
    for n, (si, sv) in enumerate(all_targets, start=1):
        print(f"[{n}/{len(all_targets)}] {sv}@{si} ...", file=sys.stderr, flush=True)
        answer = await admin_request(nc, si, sv, "dlq.replay", body)
        results += [
            {"site": si, "service": sv, **r}
            for r in answer["results"]
            if r["outcome"] != "not_found"
        ]
    for result in results:
        reason_text = f"  ({result['reason']})" if result.get("reason") else ""
        print(
            f"{result['id']:<13} {result['service']}@{result['site']}: {result['outcome']}"
            f"{reason_text}"
        )
    applied = sum(r["outcome"] == "applied" for r in results)
    print(f"\n{applied} of {len(results)} applied.")


async def services(nc, as_json: bool) -> None:
    found = await discover(nc)
    for s in found:
        site = s.get("metadata", {}).get("site", "")
        try:
            s["status"] = await admin_request(nc, site, s["name"], "status", {}, wait=2)
        except Exception as error:  # an older service, or one busy stopping
            s["status"] = {"error": repr(error)}
    if as_json:
        print(json.dumps(found, indent=2))
        return
    if not found:
        print("no service answered $SRV.INFO")
        return
    print(
        f"{'SERVICE':<15} {'SITE':<8} {'VERSION':<9} {'HANDLED':>9} {'DUPLICATES':>10} "
        f"{'OUTBOX':>7} {'DEAD LETTERS':>12}  ENDPOINTS"
    )
    for s in found:
        endpoints = ", ".join(e["name"] for e in s.get("endpoints", []))
        status = s["status"]
        figures = [
            status.get(key, "?")
            for key in (
                "messages_handled",
                "duplicates_suppressed",
                "outbox_backlog",
                "open_dead_letters",
            )
        ]
        print(
            f"{s['name']:<15} {s.get('metadata', {}).get('site', ''):<8} {s['version']:<9} "
            f"{figures[0]:>9} {figures[1]:>10} {figures[2]:>7} {figures[3]:>12}  {endpoints}"
        )


async def backlog(nc, as_json: bool) -> None:
    js = nc.jetstream()
    rows = []
    for stream in CATALOGUE.streams:
        try:
            consumers = await js.consumers_info(stream.name)
        except Exception:
            continue
        for info in consumers:
            rows.append(
                {
                    "stream": stream.name,
                    "consumer": info.name,
                    "pending": info.num_pending,
                    "ack_pending": info.num_ack_pending,
                    "redelivered": info.num_redelivered,
                    "waiting": info.num_waiting,
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'STREAM':<15} {'CONSUMER':<28} {'PENDING':>8} {'ACK PENDING':>12} {'REDELIVERED':>12}")
    for r in rows:
        print(
            f"{r['stream']:<15} {r['consumer']:<28} {r['pending']:>8} {r['ack_pending']:>12} "
            f"{r['redelivered']:>12}"
        )


async def tail(
    nc,
    target: str,
    site: str | None,
    raw: bool,
    count: int | None,
    since: datetime | None = None,
    from_seq: int | None = None,
) -> None:
    """Follow a stream (by name) or a subject (wildcards allowed) from now, or from a time or a
    stream sequence (then read from the stream itself, with an ordered consumer)."""
    stream = next((s for s in CATALOGUE.streams if s.name == target.upper()), None)
    if stream:
        subject = f"sinew.{stream.domain}.{site or '*'}.>"
    else:
        subject = target
    seen = 0
    done = asyncio.Event()

    async def show(message) -> None:
        nonlocal seen
        headers = message.headers or {}
        if raw:
            print(
                json.dumps(
                    {
                        "subject": message.subject,
                        "headers": headers,
                        "data": message.data.decode(errors="replace"),
                    }
                ),
                flush=True,
            )
        else:
            trace = trace_id_of(headers.get(TRACEPARENT)) or "-"
            print(
                f"{headers.get('ce-time', '-')[:23]}  {message.subject}\n"
                f"    type={headers.get(CE_TYPE, '-')} correlation={headers.get(CORRELATION_ID, '-')}"
                f" trace={trace}\n    {message.data[:400].decode(errors='replace')}",
                flush=True,
            )
        seen += 1
        if count and seen >= count:
            done.set()

    if since is None and from_seq is None:
        await nc.subscribe(subject, cb=show)
        start = "now"
    else:
        if from_seq is not None:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_seq
            )
            start = f"sequence {from_seq}"
        else:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=since.isoformat()
            )
            start = since.isoformat(timespec="seconds")
        await nc.jetstream().subscribe(subject, cb=show, ordered_consumer=True, config=config)
    print(f"following {subject} from {start} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    await done.wait()


async def rebuild_service(nc, service: str, site: str, data: Path, replace: bool) -> None:
    from sinew.common.actor import Wiring
    from sinew.common.config import Settings
    from sinew.common.rebuild import rebuild
    from sinew.services import definition

    from .site import SiteLayout

    running = [
        s
        for s in await discover(nc)
        if s["name"] == service and s.get("metadata", {}).get("site") == site
    ]
    if replace and running:
        raise SystemExit(f"{service}@{site} is running; stop it before --replace")
    spec = definition(service)
    live = data / site / f"{service}.sqlite"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = live.with_name(f"{service}.sqlite.rebuild-{stamp}")
    # The handlers must see what the live service sees (usage's patient-token key, else every
    # rebuilt token differs): its SINEW_* settings, or the key `sinew up` keeps under --data.
    settings = Settings.from_env(service, site=site, data_dir=data)
    kept_key = SiteLayout(data).patient_token_key(site)
    if settings.patient_token_key_file is None and kept_key.exists():
        settings = dataclasses.replace(settings, patient_token_key_file=kept_key)
    wiring = Wiring(
        service, site, CATALOGUE, spec.handlers, spec.parsers, config=spec.configure(settings)
    )

    def progress(done: int, total: int) -> None:
        width = 40
        filled = width * done // max(total, 1)
        print(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} messages",
            end="",
            file=sys.stderr,
            flush=True,
        )

    report = await rebuild(nc.jetstream(), wiring, target, spec.migrations, progress)
    print(file=sys.stderr)
    print(
        f"{report.messages} messages: {report.applied} applied, {report.dead_letters} dead "
        f"letters, {report.duplicates} duplicates; database {target}"
    )
    if replace:
        await asyncio.to_thread(_swap, live, target, f"before-rebuild-{stamp}")
        print(f"replaced {live}; the previous database is kept beside it")


def _swap(live: Path, rebuilt: Path, label: str) -> None:
    # The WAL and shared-memory files travel with their database, or committed rows are lost.
    for suffix in ("", "-wal", "-shm"):
        current = Path(f"{live}{suffix}")
        if current.exists():
            current.rename(Path(f"{live}.{label}{suffix}"))
    for suffix in ("", "-wal", "-shm"):
        produced = Path(f"{rebuilt}{suffix}")
        if produced.exists():
            produced.rename(Path(f"{live}{suffix}"))


async def recall(nc, site: str, query: dict, as_json: bool) -> None:
    """One call to the site's usage service; it asks replenishment for what is on shelves."""
    query = {k: v for k, v in query.items() if v}
    if not query:
        raise SystemExit("recall needs a LOT, --serial S or --gtin G")
    try:
        reply = await nc.request(
            f"{api_subject(site, 'usage')}.recall", json.dumps(query).encode(), timeout=30
        )
    except nats.errors.NoRespondersError:
        raise SystemExit(f"no usage service answers at site {site}") from None
    if reply.headers and reply.headers.get("Nats-Service-Error-Code"):
        raise SystemExit(f"usage@{site}: {reply.headers.get('Nats-Service-Error')}")
    answer = json.loads(reply.data)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    asked = " ".join(f"{k}={v}" for k, v in answer["query"].items())
    print(f"recall of {asked} at {answer['site']}\n")
    if not answer["uses"]:
        print("no usage recorded")
    else:
        print(
            f"{'USED AT':<26} {'CASE':<14} {'LOCATION':<14} {'PATIENT TOKEN':<36} "
            f"{'ITEM':<18} {'LOT':<12} {'SERIAL':<12} STATUS"
        )
        for use in answer["uses"]:
            print(
                f"{use['used_at'][:25]:<26} {use['case_id']:<14} {use['location_id']:<14} "
                f"{use['patient_token']:<36} {use['item_id'] or '?':<18} {use['lot'] or '-':<12} "
                f"{use['serial'] or '-':<12} {use['status']}"
            )
        print(
            f"\n{len(answer['cases'])} case(s), {len(answer['patient_tokens'])} patient(s), "
            f"locations: {', '.join(answer['locations']) or '-'}"
        )
    on_hand = answer["on_hand"]
    if not on_hand["available"]:
        print(on_hand["reason"])
        return
    print("\non hand:" if on_hand["positions"] else "\non hand: none on any shelf")
    for position in on_hand["positions"]:
        quantity = position.get("on_hand")
        if isinstance(quantity, dict):
            quantity = f"{quantity.get('value')} {quantity.get('uom', '')}".strip()
        print(
            f"  {position.get('location_id', '?'):<14} {position.get('item_id', '?'):<18} "
            f"lot {position.get('lot') or '-':<12} {quantity}"
        )


async def trace(nc, site: str, key: str, as_json: bool) -> None:
    """The timeline observability keeps of one transaction, one line per event."""
    try:
        reply = await nc.request(
            f"{api_subject(site, 'observability')}.timeline",
            json.dumps({"key": key}).encode(),
            timeout=30,
        )
    except nats.errors.NoRespondersError:
        raise SystemExit(f"no observability service answers at site {site}") from None
    if reply.headers and reply.headers.get("Nats-Service-Error-Code"):
        raise SystemExit(f"observability@{site}: {reply.headers.get('Nats-Service-Error')}")
    answer = json.loads(reply.data)
    if as_json:
        print(json.dumps(answer, indent=2))
        return
    events = answer["events"]
    if not events:
        raise SystemExit(f"no event at {site} names {key}")
    print(f"timeline of {key} at {site}: {len(events)} event(s)\n")
    print(f"{'EVENT TIME':<26} {'+START':>10} {'+PREV':>9}  {'EVENT':<44} KEYS")
    for event in events:
        keys = ", ".join(
            f"{kind}={'/'.join(values)}"
            for kind, values in event["keys"].items()
            if kind not in ("supplier", "item", "location")
        )
        print(
            f"{event['event_time'][:25]:<26} {event['since_start_seconds']:>9.1f}s "
            f"{event['since_previous_seconds']:>8.1f}s  {event['contract']:<44} {keys}"
        )
