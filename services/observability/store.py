"""Observability's tables and the reads behind its API. Everything here is a fold of the events
it consumed, so a restart or a rebuild from the streams gives the very same figures."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal

from sinew.masterdata.replica import MIGRATION as MASTER_DATA
from sinew.masterdata.replica import MasterData

from . import domain

MIGRATIONS = [
    MASTER_DATA,
    """
    CREATE TABLE obs_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        contract TEXT NOT NULL,
        subject TEXT NOT NULL,
        site TEXT NOT NULL,
        source TEXT,
        correlation_id TEXT,
        causation_id TEXT,
        about TEXT,
        event_time TEXT NOT NULL,
        handled_at TEXT NOT NULL,
        summary TEXT NOT NULL
    );
    CREATE INDEX obs_events_correlation ON obs_events (correlation_id);
    CREATE INDEX obs_events_causation ON obs_events (causation_id);
    CREATE INDEX obs_events_contract ON obs_events (contract, event_time);
    CREATE TABLE obs_keys (
        value TEXT NOT NULL,
        kind TEXT NOT NULL,
        event_id TEXT NOT NULL,
        PRIMARY KEY (value, kind, event_id)
    ) WITHOUT ROWID;
    CREATE TABLE obs_exceptions (
        exception_id TEXT PRIMARY KEY,
        domain TEXT,
        type TEXT,
        queue TEXT,
        amount TEXT NOT NULL DEFAULT '0',
        invoice_id TEXT,
        invoice_number TEXT,
        raised_at TEXT,
        resolved_at TEXT,
        resolution TEXT
    );
    CREATE TABLE obs_invoices (
        invoice_id TEXT PRIMARY KEY,
        invoice_number TEXT,
        supplier_id TEXT,
        po_number TEXT,
        total TEXT,
        submitted_at TEXT,
        matched_at TEXT,
        first_pass INTEGER
    );
    CREATE TABLE obs_po_lines (
        po_number TEXT NOT NULL,
        line_number INTEGER NOT NULL,
        unit_price TEXT NOT NULL,
        PRIMARY KEY (po_number, line_number)
    );
    CREATE TABLE obs_receipt_lines (
        receipt_id TEXT NOT NULL,
        line_index INTEGER NOT NULL,
        po_number TEXT NOT NULL,
        po_line_number INTEGER NOT NULL,
        quantity TEXT NOT NULL,
        PRIMARY KEY (receipt_id, line_index)
    );
    CREATE TABLE obs_bill_only_requests (
        request_id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL,
        requested_at TEXT NOT NULL
    );
    CREATE TABLE obs_bill_only_orders (
        po_number TEXT PRIMARY KEY,
        case_id TEXT NOT NULL,
        approved_at TEXT NOT NULL
    );
    CREATE TABLE obs_signals (
        signal_id TEXT PRIMARY KEY,
        location_id TEXT,
        item_id TEXT,
        on_hand TEXT,
        par_level TEXT,
        reorder_point TEXT,
        uom TEXT,
        raised_at TEXT,
        closed_at TEXT
    );
    CREATE TABLE obs_dead_letters (
        service TEXT NOT NULL,
        dead_letter_id TEXT NOT NULL,
        cause TEXT,
        reason TEXT,
        contract TEXT,
        recorded_at TEXT,
        status TEXT NOT NULL DEFAULT 'open',
        PRIMARY KEY (service, dead_letter_id)
    );
    """,
]

# Usage and receiving exceptions carry no queue: these are the people who work them.
QUEUE_OF_DOMAIN = {"usage": "supply_chain", "receiving": "receiving"}


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


# -- the fold: one recorded event ------------------------------------------------------------


def record_event(conn: sqlite3.Connection, event: dict, payload: dict) -> bool:
    keys = domain.business_keys(payload)
    summary = {"keys": keys, "amounts": domain.amounts(payload)}
    inserted = conn.execute(
        "INSERT OR IGNORE INTO obs_events (event_id, contract, subject, site, source,"
        " correlation_id, causation_id, about, event_time, handled_at, summary)"
        " VALUES (:event_id, :contract, :subject, :site, :source, :correlation_id,"
        " :causation_id, :about, :event_time, :handled_at, :summary)",
        {**event, "summary": json.dumps(summary)},
    ).rowcount
    if not inserted:
        return False
    conn.executemany(
        "INSERT OR IGNORE INTO obs_keys VALUES (?, ?, ?)",
        [(value, kind, event["event_id"]) for kind, value in keys],
    )
    fold = FOLDS.get(event["contract"].split(".", 1)[1].rsplit(".", 1)[0])
    if fold:
        fold(conn, event["contract"].split(".", 1)[0], payload)
    return True


def _exception_raised(conn, domain_name: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_exceptions (exception_id, domain, type, queue, amount, invoice_id,"
        " invoice_number, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (exception_id) DO UPDATE SET domain=excluded.domain, type=excluded.type,"
        " queue=coalesce(obs_exceptions.queue, excluded.queue), amount=excluded.amount,"
        " invoice_id=excluded.invoice_id, invoice_number=excluded.invoice_number,"
        " raised_at=excluded.raised_at",
        (
            p["exception_id"],
            domain_name,
            p["type"],
            p.get("queue") or QUEUE_OF_DOMAIN.get(domain_name, domain_name),
            str(p.get("amount_at_stake") or "0"),
            p.get("invoice_id"),
            p.get("invoice_number"),
            p["raised_at"],
        ),
    )


def _exception_closed(conn, domain_name: str, p: dict) -> None:
    closed_at = p.get("resolved_at") or p.get("cleared_at")
    resolution = p.get("resolution")
    conn.execute(
        "INSERT INTO obs_exceptions (exception_id, domain, type, resolved_at, resolution)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (exception_id) DO UPDATE SET"
        " resolved_at=excluded.resolved_at, resolution=excluded.resolution",
        (p["exception_id"], domain_name, p["type"], closed_at, resolution),
    )


def _exception_reassigned(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_exceptions (exception_id, type, queue) VALUES (?, ?, ?)"
        " ON CONFLICT (exception_id) DO UPDATE SET queue=excluded.queue",
        (p["exception_id"], p["type"], p["to_queue"]),
    )


def _invoice_submitted(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_invoices (invoice_id, invoice_number, supplier_id, po_number, total,"
        " submitted_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (invoice_id) DO UPDATE SET"
        " total=excluded.total, submitted_at=excluded.submitted_at,"
        " po_number=coalesce(obs_invoices.po_number, excluded.po_number)",
        (
            p["invoice_id"],
            p["invoice_number"],
            p["supplier_id"],
            p.get("po_number"),
            str(p["total"]),
            p["recorded_at"],
        ),
    )


def _invoice_matched(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_invoices (invoice_id, invoice_number, supplier_id, po_number,"
        " matched_at, first_pass) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (invoice_id) DO UPDATE"
        " SET po_number=excluded.po_number, matched_at=excluded.matched_at,"
        " first_pass=excluded.first_pass",
        (
            p["invoice_id"],
            p["invoice_number"],
            p["supplier_id"],
            p["po_number"],
            p["matched_at"],
            1 if p.get("first_pass") else 0,
        ),
    )


def _purchase_order(conn, _: str, p: dict) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO obs_po_lines VALUES (?, ?, ?)",
        [(p["po_number"], line["line_number"], str(line["unit_price"])) for line in p["lines"]],
    )


def _purchase_order_approved(conn, domain_name: str, p: dict) -> None:
    _purchase_order(conn, domain_name, p)
    if p.get("bill_only") and p.get("case_id"):
        conn.execute(
            "INSERT OR IGNORE INTO obs_bill_only_orders VALUES (?, ?, ?)",
            (p["po_number"], p["case_id"], p["approved_at"]),
        )


def _goods_received(conn, _: str, p: dict) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO obs_receipt_lines VALUES (?, ?, ?, ?, ?)",
        [
            (p["receipt_id"], i, p["po_number"], line["po_line_number"], line["quantity"]["value"])
            for i, line in enumerate(p["lines"])
        ],
    )


def _bill_only_requested(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO obs_bill_only_requests VALUES (?, ?, ?)",
        (p["request_id"], p["case_id"], p["requested_at"]),
    )


def _signal_raised(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_signals (signal_id, location_id, item_id, on_hand, par_level,"
        " reorder_point, uom, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (signal_id) DO UPDATE SET par_level=excluded.par_level,"
        " reorder_point=excluded.reorder_point, raised_at=excluded.raised_at",
        (
            p["signal_id"],
            p["location_id"],
            p["item_id"],
            p["on_hand"]["value"],
            p["par_level"]["value"],
            p["reorder_point"]["value"],
            p["on_hand"]["uom"],
            p["raised_at"],
        ),
    )


def _signal_updated(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_signals (signal_id, location_id, item_id, on_hand, uom) VALUES"
        " (?, ?, ?, ?, ?) ON CONFLICT (signal_id) DO UPDATE SET on_hand=excluded.on_hand",
        (
            p["signal_id"],
            p["location_id"],
            p["item_id"],
            p["on_hand"]["value"],
            p["on_hand"]["uom"],
        ),
    )


def _signal_closed(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_signals (signal_id, location_id, item_id, on_hand, closed_at) VALUES"
        " (?, ?, ?, ?, ?) ON CONFLICT (signal_id) DO UPDATE SET on_hand=excluded.on_hand,"
        " closed_at=excluded.closed_at",
        (p["signal_id"], p["location_id"], p["item_id"], p["on_hand"]["value"], p["closed_at"]),
    )


def _dead_letter_recorded(conn, _: str, p: dict) -> None:
    conn.execute(
        "INSERT INTO obs_dead_letters (service, dead_letter_id, cause, reason, contract,"
        " recorded_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (service, dead_letter_id) DO UPDATE"
        " SET cause=excluded.cause, reason=excluded.reason, contract=excluded.contract,"
        " recorded_at=excluded.recorded_at",
        (
            p["service"],
            p["dead_letter_id"],
            p["cause"],
            p["reason"],
            p["contract"],
            p["recorded_at"],
        ),
    )


def _dead_letter_replayed(conn, _: str, p: dict) -> None:
    status = "open" if p["outcome"] == "failed_again" else "replayed"
    conn.execute(
        "INSERT INTO obs_dead_letters (service, dead_letter_id, status) VALUES (?, ?, ?)"
        " ON CONFLICT (service, dead_letter_id) DO UPDATE SET status=excluded.status",
        (p["service"], p["dead_letter_id"], status),
    )


# Keyed by the channel name without domain and version: "exception.raised" is the same fold in
# matching, receiving and usage.
FOLDS = {
    "exception.raised": _exception_raised,
    "exception.resolved": _exception_closed,
    "exception.cleared": _exception_closed,
    "exception.reassigned": _exception_reassigned,
    "invoice.submitted": _invoice_submitted,
    "invoice.matched": _invoice_matched,
    "purchase-order.approved": _purchase_order_approved,
    "purchase-order.changed": _purchase_order,
    "goods.received": _goods_received,
    "bill-only.requested": _bill_only_requested,
    "signal.raised": _signal_raised,
    "signal.updated": _signal_updated,
    "signal.closed": _signal_closed,
    "dead-letter.recorded": _dead_letter_recorded,
    "dead-letter.replayed": _dead_letter_replayed,
}


# -- reads ------------------------------------------------------------------------------------


def business_kpis(conn: sqlite3.Connection, site: str, now: datetime) -> dict:
    matched = conn.execute(
        "SELECT count(*) AS matched, coalesce(sum(first_pass = 1 AND NOT EXISTS ("
        "  SELECT 1 FROM obs_exceptions x WHERE x.invoice_id = i.invoice_id"
        "  AND x.domain = 'matching')), 0) AS first_pass"
        " FROM obs_invoices i WHERE matched_at IS NOT NULL"
    ).fetchone()
    open_rows = conn.execute(
        "SELECT domain, type, queue, amount, raised_at FROM obs_exceptions"
        " WHERE resolved_at IS NULL AND raised_at IS NOT NULL"
    ).fetchall()
    by_queue: dict[str, dict] = {}
    by_type: dict[str, dict] = {}
    by_queue_and_type: dict[tuple[str, str], int] = {}
    total_amount = Decimal(0)
    for row in open_rows:
        pair = (row["queue"], row["type"])
        by_queue_and_type[pair] = by_queue_and_type.get(pair, 0) + 1
        amount = Decimal(row["amount"] or 0)
        total_amount += amount
        bucket = domain.age_bucket(parse(row["raised_at"]), now)
        queue = by_queue.setdefault(
            row["queue"],
            {"count": 0, "amount": Decimal(0), "ages": dict.fromkeys(_buckets(), 0)},
        )
        queue["count"] += 1
        queue["amount"] += amount
        queue["ages"][bucket] += 1
        kind = by_type.setdefault(row["type"], {"count": 0, "amount": Decimal(0)})
        kind["count"] += 1
        kind["amount"] += amount
    awaiting = [r for r in open_rows if r["type"] == "AWAITING_RECEIPT"]
    leakage = conn.execute(
        "SELECT amount FROM obs_exceptions WHERE type='PRICE_VARIANCE' AND domain='matching'"
    ).fetchall()
    return {
        "site": site,
        "as_of": iso(now),
        "invoices_matched": matched["matched"],
        "invoices_first_pass": matched["first_pass"],
        "first_pass_match_rate": domain.ratio(matched["first_pass"], matched["matched"]),
        "open_exceptions": {
            "count": len(open_rows),
            "amount": domain.money(total_amount),
            "by_queue": {
                q: {**v, "amount": domain.money(v["amount"])} for q, v in sorted(by_queue.items())
            },
            "by_type": {
                t: {**v, "amount": domain.money(v["amount"])} for t, v in sorted(by_type.items())
            },
            "by_queue_and_type": [
                {"queue": q, "type": t, "count": n}
                for (q, t), n in sorted(by_queue_and_type.items())
            ],
        },
        "invoices_awaiting_receipt": {
            "count": len(awaiting),
            "amount": domain.money(sum(Decimal(r["amount"] or 0) for r in awaiting)),
        },
        "received_not_invoiced": _received_not_invoiced(conn),
        "unknown_items_open": sum(1 for r in open_rows if r["type"] == "UNKNOWN_ITEM"),
        "usage_to_bill_only_po": _bill_only_times(conn),
        "contract_leakage": {
            "exceptions": len(leakage),
            "amount": domain.money(sum(Decimal(r["amount"] or 0) for r in leakage)),
        },
        "below_par": _below_par(conn),
        "dead_letters": dead_letters(conn),
    }


def _buckets() -> list[str]:
    return [name for name, _ in domain.AGE_BUCKETS]


def _received_not_invoiced(conn: sqlite3.Connection) -> dict:
    """What was received on purchase orders no invoice names yet, at the PO's unit price."""
    rows = conn.execute(
        "SELECT r.po_number, r.quantity, l.unit_price FROM obs_receipt_lines r"
        " LEFT JOIN obs_po_lines l ON l.po_number = r.po_number"
        "  AND l.line_number = r.po_line_number"
        " WHERE NOT EXISTS (SELECT 1 FROM obs_invoices i WHERE i.po_number = r.po_number)"
    ).fetchall()
    amount = sum(Decimal(r["quantity"]) * Decimal(r["unit_price"] or 0) for r in rows)
    return {
        "purchase_orders": len({r["po_number"] for r in rows}),
        "amount": domain.money(amount),
        "unpriced_lines": sum(1 for r in rows if r["unit_price"] is None),
    }


def _bill_only_times(conn: sqlite3.Connection) -> dict:
    rows = conn.execute(
        "SELECT r.requested_at, min(o.approved_at) AS approved_at FROM obs_bill_only_requests r"
        " JOIN obs_bill_only_orders o ON o.case_id = r.case_id GROUP BY r.request_id"
    ).fetchall()
    waiting = conn.execute(
        "SELECT count(*) FROM obs_bill_only_requests r WHERE NOT EXISTS"
        " (SELECT 1 FROM obs_bill_only_orders o WHERE o.case_id = r.case_id)"
    ).fetchone()[0]
    seconds = [
        max(0.0, (parse(r["approved_at"]) - parse(r["requested_at"])).total_seconds()) for r in rows
    ]
    return {"ordered": len(rows), "waiting_for_po": waiting, "seconds": domain.percentiles(seconds)}


def _below_par(conn: sqlite3.Connection) -> dict:
    rows = conn.execute(
        "SELECT location_id, item_id, on_hand, par_level, reorder_point, uom, raised_at"
        " FROM obs_signals WHERE closed_at IS NULL AND raised_at IS NOT NULL"
        " ORDER BY location_id, item_id"
    ).fetchall()
    md = MasterData(conn)
    items = []
    for r in rows:
        item, location = md.item(r["item_id"]), md.location(r["location_id"])
        items.append(
            {
                **dict(r),
                "item_name": item.description if item else None,
                "location_name": location.name if location else None,
            }
        )
    return {"open_signals": len(rows), "items": items}


def dead_letters(conn: sqlite3.Connection) -> dict:
    rows = conn.execute(
        "SELECT service, cause, status, count(*) AS n FROM obs_dead_letters"
        " WHERE cause IS NOT NULL GROUP BY service, cause, status"
    ).fetchall()
    by_service: dict[str, dict[str, int]] = {}
    by_cause: dict[str, int] = {}
    for r in rows:
        if r["status"] != "open":
            continue
        by_service.setdefault(r["service"], {})[r["cause"]] = r["n"]
        by_cause[r["cause"]] = by_cause.get(r["cause"], 0) + r["n"]
    return {
        "open": sum(by_cause.values()),
        "recorded": sum(r["n"] for r in rows),
        "by_service": by_service,
        "by_cause": by_cause,
    }


def dead_letter_reasons(conn: sqlite3.Connection, limit: int = 20) -> list[dict]:
    rows = conn.execute(
        "SELECT service, cause, reason, count(*) AS count, max(recorded_at) AS last_at"
        " FROM obs_dead_letters WHERE status='open' AND cause IS NOT NULL"
        " GROUP BY service, cause, reason ORDER BY count DESC, last_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [dict(r) for r in rows]


def latency(conn: sqlite3.Connection, sample: int = 5000) -> dict:
    """Delivery (event time → recorded here) per stream domain, each hop (the causing event's
    time → the caused event's time) per publishing service, and end to end per correlation."""
    recent = conn.execute(
        "SELECT contract, event_time, handled_at FROM obs_events ORDER BY seq DESC LIMIT ?",
        (sample,),
    ).fetchall()
    delivery: dict[str, list[float]] = {}
    for r in recent:
        seconds = (parse(r["handled_at"]) - parse(r["event_time"])).total_seconds()
        delivery.setdefault(r["contract"].split(".")[0], []).append(max(0.0, seconds))
    hops: dict[str, list[float]] = {}
    for r in conn.execute(
        "SELECT e.contract, e.event_time, c.event_time AS caused_at FROM obs_events e"
        " JOIN obs_events c ON c.event_id = e.causation_id ORDER BY e.seq DESC LIMIT ?",
        (sample,),
    ):
        seconds = (parse(r["event_time"]) - parse(r["caused_at"])).total_seconds()
        hops.setdefault(r["contract"].split(".")[0], []).append(max(0.0, seconds))
    end_to_end = [
        (parse(r["last"]) - parse(r["first"])).total_seconds()
        for r in conn.execute(
            "SELECT min(event_time) AS first, max(event_time) AS last FROM ("
            " SELECT correlation_id, event_time FROM obs_events ORDER BY seq DESC LIMIT ?)"
            " GROUP BY correlation_id HAVING count(*) > 1",
            (sample,),
        )
    ]
    return {
        "delivery": {k: domain.percentiles(v) for k, v in sorted(delivery.items())},
        "hop": {k: domain.percentiles(v) for k, v in sorted(hops.items())},
        "end_to_end": domain.percentiles(end_to_end),
    }


def feeds(conn: sqlite3.Connection, now: datetime) -> dict:
    last: dict[str, str] = {}
    for contract, source in domain.SOURCES.items():
        row = conn.execute(
            "SELECT max(event_time) FROM obs_events WHERE contract=?", (contract,)
        ).fetchone()[0]
        if row and row > last.get(source, ""):
            last[source] = row
    return {
        source: {
            "last_event_at": last.get(source),
            "age_seconds": round((now - parse(last[source])).total_seconds(), 1)
            if source in last
            else None,
        }
        for source in sorted(set(domain.SOURCES.values()))
    }


def timeline(conn: sqlite3.Connection, key: str, limit: int = 500) -> list[dict]:
    """Every event of the transaction a key belongs to: the events naming it, then those sharing
    their correlation ids and transaction keys, a few rounds out."""
    seen: set[str] = set()
    frontier = {
        r[0]
        for r in conn.execute(
            "SELECT event_id FROM obs_keys WHERE value=? UNION"
            " SELECT event_id FROM obs_events WHERE correlation_id=? OR event_id=? OR about=?",
            (key, key, key, key),
        )
    }
    kinds = ",".join("?" * len(domain.TRANSACTION_KINDS))
    for _ in range(6):
        frontier -= seen
        if not frontier or len(seen) >= limit:
            break
        seen |= frontier
        marks = ",".join("?" * len(frontier))
        ids = list(frontier)
        frontier = {
            r[0]
            for r in conn.execute(
                f"SELECT e.event_id FROM obs_events e WHERE e.correlation_id IN"
                f" (SELECT correlation_id FROM obs_events WHERE event_id IN ({marks}))"
                f" UNION SELECT k2.event_id FROM obs_keys k1 JOIN obs_keys k2"
                f" ON k2.value = k1.value AND k2.kind = k1.kind"
                f" WHERE k1.event_id IN ({marks}) AND k1.kind IN ({kinds})",
                [*ids, *ids, *domain.TRANSACTION_KINDS],
            )
        }
    seen |= frontier
    if not seen:
        return []
    marks = ",".join("?" * len(seen))
    rows = conn.execute(
        f"SELECT * FROM obs_events WHERE event_id IN ({marks}) ORDER BY event_time, seq LIMIT ?",
        [*seen, limit],
    ).fetchall()
    events = []
    start = previous = None
    for r in rows:
        at = parse(r["event_time"])
        start = start or at
        summary = json.loads(r["summary"])
        events.append(
            {
                "event_id": r["event_id"],
                "contract": r["contract"],
                "service": r["contract"].split(".")[0],
                "subject": r["subject"],
                "about": r["about"],
                "correlation_id": r["correlation_id"],
                "causation_id": r["causation_id"],
                "event_time": r["event_time"],
                "handled_at": r["handled_at"],
                "since_start_seconds": round((at - start).total_seconds(), 3),
                "since_previous_seconds": round((at - (previous or at)).total_seconds(), 3),
                "keys": _grouped(summary["keys"]),
                "amounts": summary["amounts"],
            }
        )
        previous = at
    return events


def _grouped(keys: list) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for kind, value in keys:
        grouped.setdefault(kind, []).append(value)
    return grouped


def event_count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM obs_events").fetchone()[0]
