"""Matching's tables and every SQL statement that reads or writes them.

Amounts and quantities are decimals kept as text and summed in Python, so nothing passes through
a float. Whole messages (the PO at its revision, the invoice as admitted, the exception as raised)
are kept as JSON beside the columns the queues filter on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from sinew.common.store import page_of
from sinew.contracts.common import Quantity
from sinew.contracts.matching import (
    InvoiceSubmitted,
    MatchCheck,
    MatchExceptionRaised,
    PaymentRelease,
)
from sinew.contracts.procurement import PurchaseOrder
from sinew.contracts.receiving import GoodsReceived
from sinew.contracts.usage import ProcedureUsageRecorded
from sinew.masterdata import replica

from .domain import PROBLEM_ORDER, Delivery, MatchDecision

OPEN_INVOICE = ("awaiting_receipt", "exception")

MIGRATIONS = [
    replica.MIGRATION,
    """
    -- Each PO at its highest revision: every procurement event carries the whole order.
    CREATE TABLE purchase_orders (
        po_number TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        supplier_id TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'cancelled', 'closed')),
        bill_only INTEGER NOT NULL DEFAULT 0,
        case_id TEXT,
        body BLOB,  -- null while only its cancellation is known
        updated_at TEXT NOT NULL
    );
    CREATE INDEX purchase_orders_case ON purchase_orders(case_id) WHERE case_id IS NOT NULL;
    CREATE TABLE po_usage_links (
        usage_id TEXT NOT NULL,
        po_number TEXT NOT NULL,
        po_line_number INTEGER NOT NULL,
        PRIMARY KEY (usage_id, po_number, po_line_number)
    ) WITHOUT ROWID;
    CREATE TABLE receipt_lines (
        receipt_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        po_number TEXT NOT NULL,
        po_line_number INTEGER NOT NULL,
        item_id TEXT NOT NULL,
        quantity TEXT NOT NULL,  -- in base units, as receiving converted it
        uom TEXT NOT NULL,
        supplier_id TEXT NOT NULL,
        received_at TEXT NOT NULL,
        PRIMARY KEY (receipt_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX receipt_lines_po ON receipt_lines(po_number, po_line_number);
    CREATE TABLE usages (
        usage_id TEXT PRIMARY KEY,
        case_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        quantity TEXT NOT NULL,  -- in base units
        uom TEXT NOT NULL,
        bill_only INTEGER NOT NULL,
        supplier_id TEXT,
        used_at TEXT NOT NULL,
        voided_at TEXT
    ) WITHOUT ROWID;
    CREATE INDEX usages_case ON usages(case_id, item_id);

    CREATE TABLE invoices (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        invoice_id TEXT NOT NULL UNIQUE,
        supplier_id TEXT NOT NULL,
        invoice_number TEXT NOT NULL,
        invoice_key TEXT NOT NULL,  -- normalised number: what a duplicate is recognised by
        po_number TEXT,
        source_format TEXT NOT NULL,
        currency TEXT NOT NULL,
        total TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('awaiting_receipt', 'exception', 'approved', 'rejected', 'paid')),
        first_pass INTEGER,  -- 1 when it matched with no exception ever raised
        match_type TEXT,
        credit_amount TEXT NOT NULL DEFAULT '0',
        overrides TEXT NOT NULL DEFAULT '{}',  -- exception type -> the person who approved it
        approved_amount TEXT,
        approval_basis TEXT,
        approved_by TEXT,
        approved_at TEXT,
        payment_id TEXT,
        paid_amount TEXT,
        paid_at TEXT,
        body BLOB NOT NULL,  -- the InvoiceSubmitted
        submitted_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (supplier_id, invoice_key)
    );
    CREATE INDEX invoices_po ON invoices(po_number, status);
    CREATE INDEX invoices_status ON invoices(status, supplier_id);
    -- Every time an invoice number arrived, admitted or not, with the document as sent.
    CREATE TABLE invoice_submissions (
        event_id TEXT PRIMARY KEY,
        supplier_id TEXT NOT NULL,
        invoice_number TEXT NOT NULL,
        invoice_key TEXT NOT NULL,
        source_format TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('admitted', 'duplicate')),
        invoice_id TEXT NOT NULL,  -- the invoice admitted, or the one it duplicates
        exception_id TEXT,
        body BLOB NOT NULL,
        received_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX invoice_submissions_invoice ON invoice_submissions(invoice_id);
    -- What each invoice line claims on a PO line, in the ordered item's base units.
    CREATE TABLE invoice_allocations (
        invoice_id TEXT NOT NULL,
        invoice_line_number INTEGER NOT NULL,
        po_number TEXT NOT NULL,
        po_line_number INTEGER NOT NULL,
        quantity TEXT NOT NULL,
        amount TEXT NOT NULL,
        PRIMARY KEY (invoice_id, invoice_line_number)
    ) WITHOUT ROWID;
    CREATE INDEX invoice_allocations_po ON invoice_allocations(po_number, po_line_number);
    -- Items an invoice bills or its PO orders, so a master-data change finds who to re-match.
    CREATE TABLE invoice_items (
        item_id TEXT NOT NULL,
        invoice_id TEXT NOT NULL,
        PRIMARY KEY (item_id, invoice_id)
    ) WITHOUT ROWID;
    -- Every evaluation, with every check made: the explanation an analyst reads.
    CREATE TABLE match_runs (
        invoice_id TEXT NOT NULL,
        run INTEGER NOT NULL,
        trigger TEXT NOT NULL,
        outcome TEXT NOT NULL,
        match_type TEXT NOT NULL,
        problems TEXT NOT NULL,
        checks BLOB NOT NULL,
        policy_version TEXT NOT NULL,
        evaluated_at TEXT NOT NULL,
        PRIMARY KEY (invoice_id, run)
    ) WITHOUT ROWID;

    CREATE TABLE match_exceptions (
        exception_id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        queue TEXT NOT NULL,
        invoice_id TEXT,
        invoice_number TEXT NOT NULL,
        supplier_id TEXT NOT NULL,
        po_number TEXT,
        currency TEXT NOT NULL,
        amount_at_stake TEXT NOT NULL,
        explanation TEXT NOT NULL,
        checks BLOB NOT NULL,
        duplicate_of_invoice_id TEXT,
        payment_id TEXT,
        raised_at TEXT NOT NULL,
        sla_due_at TEXT NOT NULL,
        resolution TEXT,
        resolved_by TEXT,
        resolved_at TEXT,
        resolution_reason TEXT,
        credit_amount TEXT,
        body BLOB NOT NULL  -- the MatchExceptionRaised as published
    ) WITHOUT ROWID;
    CREATE INDEX match_exceptions_queue ON match_exceptions(status, queue, raised_at);
    CREATE INDEX match_exceptions_invoice ON match_exceptions(invoice_id, status);
    CREATE INDEX match_exceptions_duplicate ON match_exceptions(duplicate_of_invoice_id);
    -- Who did what to an exception, when and why; the matcher's own actions included.
    CREATE TABLE exception_actions (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        exception_id TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        details TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX exception_actions_exception ON exception_actions(exception_id, seq);

    CREATE TABLE payments (
        payment_id TEXT PRIMARY KEY,
        supplier_id TEXT NOT NULL,
        amount TEXT NOT NULL,
        method TEXT NOT NULL,
        body BLOB NOT NULL,
        released_at TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE payment_applications (
        payment_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        invoice_number TEXT NOT NULL,
        invoice_id TEXT,
        amount TEXT NOT NULL,
        discount TEXT NOT NULL,
        outcome TEXT NOT NULL CHECK (outcome IN ('paid', 'unapproved', 'duplicate')),
        exception_id TEXT,
        PRIMARY KEY (payment_id, position)
    ) WITHOUT ROWID;
    CREATE INDEX payment_applications_invoice ON payment_applications(invoice_id);
    """,
]

_encoder = msgspec.json.Encoder(decimal_format="string")
_orders = msgspec.json.Decoder(PurchaseOrder)
_invoices = msgspec.json.Decoder(InvoiceSubmitted)
_raised = msgspec.json.Decoder(MatchExceptionRaised)
_checks = msgspec.json.Decoder(list[MatchCheck])


def decimal(text: str | None) -> Decimal:
    return Decimal(text) if text else Decimal(0)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def _at(moment: datetime) -> str:
    return moment.isoformat()


# -- purchase orders ----------------------------------------------------------------------------


def keep_order(conn: sqlite3.Connection, order: PurchaseOrder, at: datetime) -> bool:
    """Keep the order if its revision is newer than the one held. True when kept."""
    held = conn.execute(
        "SELECT revision, status, body FROM purchase_orders WHERE po_number=?", (order.po_number,)
    ).fetchone()
    if held is not None and held["body"] is not None and held["revision"] >= order.revision:
        return False
    # A cancellation at this revision or later that arrived first still stands.
    cancelled = (
        held is not None and held["status"] == "cancelled" and held["revision"] >= order.revision
    )
    whole = PurchaseOrder(
        **{name: getattr(order, name) for name in PurchaseOrder.__struct_fields__}
    )
    conn.execute(
        "INSERT OR REPLACE INTO purchase_orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            order.po_number,
            max(order.revision, held["revision"] if held else 0),
            order.supplier_id,
            "cancelled" if cancelled else (held["status"] if held else "open"),
            int(order.bill_only),
            order.case_id,
            encode(whole),
            _at(at),
        ),
    )
    conn.execute("DELETE FROM po_usage_links WHERE po_number=?", (order.po_number,))
    conn.executemany(
        "INSERT OR IGNORE INTO po_usage_links VALUES (?, ?, ?)",
        [
            (line.bill_only_usage.usage_id, order.po_number, line.line_number)
            for line in order.lines
            if line.bill_only_usage
        ],
    )
    return True


def set_order_status(
    conn: sqlite3.Connection,
    po_number: str,
    supplier_id: str,
    status: str,
    at: datetime,
    revision: int | None = None,
) -> None:
    updated = conn.execute(
        "UPDATE purchase_orders SET status=?, updated_at=?, revision=max(revision, ?)"
        " WHERE po_number=? AND status != 'cancelled'",
        (status, _at(at), revision or 0, po_number),
    ).rowcount
    exists = conn.execute("SELECT 1 FROM purchase_orders WHERE po_number=?", (po_number,))
    if not updated and exists.fetchone() is None:
        conn.execute(
            "INSERT INTO purchase_orders VALUES (?, ?, ?, ?, 0, NULL, NULL, ?)",
            (po_number, revision or 0, supplier_id, status, _at(at)),
        )


def order(conn: sqlite3.Connection, po_number: str | None) -> tuple[PurchaseOrder | None, str]:
    """The PO at its highest revision, and its status ('unknown' when never approved)."""
    if po_number is None:
        return None, "unknown"
    row = conn.execute(
        "SELECT status, body FROM purchase_orders WHERE po_number=?", (po_number,)
    ).fetchone()
    if row is None or row["body"] is None:
        return None, row["status"] if row else "unknown"
    return _orders.decode(row["body"]), row["status"]


def orders_with_positions(conn: sqlite3.Connection, supplier_id: str | None) -> list[PurchaseOrder]:
    """POs with something received, used or invoiced against them."""
    sql = (
        "SELECT body FROM purchase_orders WHERE body IS NOT NULL AND status != 'cancelled'"
        " AND (po_number IN (SELECT po_number FROM receipt_lines)"
        " OR po_number IN (SELECT po_number FROM invoice_allocations) OR bill_only = 1)"
    )
    params: tuple = ()
    if supplier_id:
        sql += " AND supplier_id=?"
        params = (supplier_id,)
    return [_orders.decode(row[0]) for row in conn.execute(sql + " ORDER BY po_number", params)]


# -- receipts and usage -------------------------------------------------------------------------


def add_receipt(conn: sqlite3.Connection, receipt: GoodsReceived) -> bool:
    rows = [
        (
            receipt.receipt_id,
            position,
            receipt.po_number,
            line.po_line_number,
            line.item_id,
            str(line.base_quantity.value),
            line.base_quantity.uom,
            receipt.supplier_id,
            _at(receipt.received_at),
        )
        for position, line in enumerate(receipt.lines)
    ]
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO receipt_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return conn.total_changes > before


def record_usage(conn: sqlite3.Connection, usage: ProcedureUsageRecorded) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO usages VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        (
            usage.usage_id,
            usage.case_id,
            usage.item_id,
            str(usage.base_quantity.value),
            usage.base_quantity.uom,
            int(usage.bill_only),
            usage.supplier_id,
            _at(usage.used_at),
        ),
    )


def void_usage(conn: sqlite3.Connection, usage_id: str, at: datetime) -> str | None:
    """Mark the usage voided; the case it belonged to, when it was known."""
    conn.execute(
        "UPDATE usages SET voided_at=? WHERE usage_id=? AND voided_at IS NULL", (_at(at), usage_id)
    )
    row = conn.execute("SELECT case_id FROM usages WHERE usage_id=?", (usage_id,)).fetchone()
    return row[0] if row else None


def orders_for_usage(conn: sqlite3.Connection, usage_id: str, case_id: str | None) -> list[str]:
    rows = conn.execute(
        "SELECT po_number FROM po_usage_links WHERE usage_id=?"
        " UNION SELECT po_number FROM purchase_orders WHERE bill_only=1 AND case_id=?",
        (usage_id, case_id),
    )
    return [row[0] for row in rows]


def deliveries(conn: sqlite3.Connection, order: PurchaseOrder) -> list[Delivery]:
    """What stands for delivery on each PO line: receipts, and for bill-only lines the usage
    (linked by the line, or else the same item used in the PO's case), unless voided."""
    found = [
        Delivery(
            row["po_line_number"],
            row["item_id"],
            Quantity(value=Decimal(row["quantity"]), uom=row["uom"]),
            row["receipt_id"],
            "receipt",
        )
        for row in conn.execute(
            "SELECT * FROM receipt_lines WHERE po_number=? ORDER BY received_at, receipt_id,"
            " position",
            (order.po_number,),
        )
    ]
    for line in order.lines:
        if not (order.bill_only or line.bill_only_usage):
            continue
        if line.bill_only_usage:
            rows = conn.execute(
                "SELECT * FROM usages WHERE usage_id=? AND voided_at IS NULL",
                (line.bill_only_usage.usage_id,),
            )
        else:
            rows = conn.execute(
                "SELECT * FROM usages WHERE case_id=? AND item_id=? AND voided_at IS NULL"
                " ORDER BY used_at, usage_id",
                (order.case_id, line.item_id),
            )
        found += [
            Delivery(
                line.line_number,
                row["item_id"],
                Quantity(value=Decimal(row["quantity"]), uom=row["uom"]),
                row["usage_id"],
                "usage",
            )
            for row in rows
        ]
    return found


# -- invoices -----------------------------------------------------------------------------------


def invoice_by_key(conn: sqlite3.Connection, supplier_id: str, key: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM invoices WHERE supplier_id=? AND invoice_key=?", (supplier_id, key)
    ).fetchone()


def invoice_row(conn: sqlite3.Connection, invoice_id: str) -> sqlite3.Row | None:
    return conn.execute("SELECT * FROM invoices WHERE invoice_id=?", (invoice_id,)).fetchone()


def invoice_document(row: sqlite3.Row) -> InvoiceSubmitted:
    return _invoices.decode(row["body"])


def admit_invoice(conn: sqlite3.Connection, invoice: InvoiceSubmitted, key: str) -> None:
    at = _at(invoice.recorded_at)
    conn.execute(
        "INSERT INTO invoices (invoice_id, supplier_id, invoice_number, invoice_key, po_number,"
        " source_format, currency, total, status, body, submitted_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'exception', ?, ?, ?)",
        (
            invoice.invoice_id,
            invoice.supplier_id,
            invoice.invoice_number,
            key,
            invoice.po_number,
            invoice.source_format,
            invoice.currency,
            str(invoice.total),
            encode(invoice),
            at,
            at,
        ),
    )


def record_submission(
    conn: sqlite3.Connection,
    event_id: str,
    invoice: Any,
    key: str,
    source_format: str,
    outcome: str,
    invoice_id: str,
    exception_id: str | None,
    at: datetime,
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO invoice_submissions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event_id,
            invoice.supplier_id,
            invoice.invoice_number,
            key,
            source_format,
            outcome,
            invoice_id,
            exception_id,
            encode(invoice),
            _at(at),
        ),
    )


INVOICE_FILTERS = {
    "status": "status=?",
    "supplier": "supplier_id=?",
    "po": "po_number=?",
    "number": "invoice_number=?",
}


def list_invoices(
    conn: sqlite3.Connection, filters: dict[str, str], limit: int, offset: int
) -> tuple[list[sqlite3.Row], int]:
    return page_of(
        conn,
        select="*",
        source="invoices",
        where={INVOICE_FILTERS[name]: value for name, value in filters.items()},
        order_by="seq",
        limit=limit,
        offset=offset,
    )


def submissions(conn: sqlite3.Connection, invoice_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT event_id, invoice_number, source_format, outcome, exception_id, received_at"
        " FROM invoice_submissions WHERE invoice_id=? ORDER BY received_at, event_id",
        (invoice_id,),
    )
    return [dict(row) for row in rows]


def invoiced_before(conn: sqlite3.Connection, po_number: str, seq: int) -> dict[int, Decimal]:
    """What earlier invoices (not rejected) claim on each line of the PO."""
    claimed: dict[int, Decimal] = {}
    for row in conn.execute(
        "SELECT a.po_line_number, a.quantity FROM invoice_allocations a"
        " JOIN invoices i ON i.invoice_id = a.invoice_id"
        " WHERE a.po_number=? AND i.seq < ? AND i.status != 'rejected'",
        (po_number, seq),
    ):
        claimed[row[0]] = claimed.get(row[0], Decimal(0)) + Decimal(row[1])
    return claimed


def keep_evaluation(
    conn: sqlite3.Connection,
    invoice_id: str,
    po_number: str | None,
    decision: MatchDecision,
    item_ids: Iterable[str],
    trigger: str,
    policy_version: str,
    at: datetime,
) -> int:
    """Record the decision (the explanation) and what the invoice now claims. The run number."""
    conn.execute("DELETE FROM invoice_allocations WHERE invoice_id=?", (invoice_id,))
    conn.executemany(
        "INSERT INTO invoice_allocations VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                invoice_id,
                a.invoice_line_number,
                po_number,
                a.po_line_number,
                str(a.quantity),
                str(a.amount),
            )
            for a in decision.allocations
        ],
    )
    conn.executemany(
        "INSERT OR IGNORE INTO invoice_items VALUES (?, ?)",
        [(item_id, invoice_id) for item_id in sorted(set(item_ids))],
    )
    run = conn.execute(
        "SELECT coalesce(max(run), 0) + 1 FROM match_runs WHERE invoice_id=?", (invoice_id,)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO match_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            invoice_id,
            run,
            trigger,
            "matched" if decision.matched else "exception",
            decision.match_type,
            encode(
                [{"type": p.type, "amount_at_stake": p.amount_at_stake} for p in decision.problems]
            ),
            encode(list(decision.checks)),
            policy_version,
            _at(at),
        ),
    )
    return run


def set_invoice_status(
    conn: sqlite3.Connection, invoice_id: str, status: str, at: datetime, **columns: Any
) -> None:
    assignments = ", ".join(f"{name}=?" for name in columns)
    conn.execute(
        f"UPDATE invoices SET status=?, updated_at=?{', ' + assignments if columns else ''}"
        " WHERE invoice_id=?",
        (status, _at(at), *columns.values(), invoice_id),
    )


def open_invoices(
    conn: sqlite3.Connection,
    *,
    po_numbers: Iterable[str] = (),
    supplier_id: str | None = None,
    item_ids: Iterable[str] = (),
    with_open: str | None = None,
) -> list[str]:
    """Invoices still waiting on something, oldest first, that any of these may concern."""
    clauses, params = [], []
    po_numbers, item_ids = list(po_numbers), list(item_ids)
    if po_numbers:
        clauses.append(f"po_number IN ({', '.join('?' * len(po_numbers))})")
        params += po_numbers
    if supplier_id:
        clauses.append("supplier_id=?")
        params.append(supplier_id)
    if item_ids:
        clauses.append(
            f"invoice_id IN (SELECT invoice_id FROM invoice_items WHERE item_id IN"
            f" ({', '.join('?' * len(item_ids))}))"
        )
        params += item_ids
    if with_open:
        clauses.append(
            "invoice_id IN (SELECT invoice_id FROM match_exceptions WHERE status='open' AND type=?)"
        )
        params.append(with_open)
    if not clauses:
        return []
    rows = conn.execute(
        f"SELECT invoice_id FROM invoices WHERE status IN {OPEN_INVOICE}"
        f" AND ({' OR '.join(clauses)}) ORDER BY seq",
        params,
    )
    return [row[0] for row in rows]


def latest_run(conn: sqlite3.Connection, invoice_id: str) -> dict | None:
    row = conn.execute(
        "SELECT * FROM match_runs WHERE invoice_id=? ORDER BY run DESC LIMIT 1", (invoice_id,)
    ).fetchone()
    return _run(row) if row else None


def runs(conn: sqlite3.Connection, invoice_id: str) -> list[dict]:
    rows = conn.execute("SELECT * FROM match_runs WHERE invoice_id=? ORDER BY run", (invoice_id,))
    return [_run(row) for row in rows]


def _run(row: sqlite3.Row) -> dict:
    return {
        "run": row["run"],
        "trigger": row["trigger"],
        "outcome": row["outcome"],
        "match_type": row["match_type"],
        "problems": msgspec.json.decode(row["problems"]),
        "checks": _checks.decode(row["checks"]),
        "policy_version": row["policy_version"],
        "evaluated_at": row["evaluated_at"],
    }


# -- exceptions ---------------------------------------------------------------------------------


def add_exception(conn: sqlite3.Connection, raised: MatchExceptionRaised) -> None:
    conn.execute(
        "INSERT INTO match_exceptions (exception_id, type, status, queue, invoice_id,"
        " invoice_number, supplier_id, po_number, currency, amount_at_stake, explanation, checks,"
        " duplicate_of_invoice_id, payment_id, raised_at, sla_due_at, body)"
        " VALUES (?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            raised.exception_id,
            raised.type,
            raised.queue,
            raised.invoice_id,
            raised.invoice_number,
            raised.supplier_id,
            raised.po_number,
            raised.currency,
            str(raised.amount_at_stake),
            raised.explanation,
            encode(list(raised.checks)),
            raised.duplicate_of_invoice_id,
            raised.payment_id,
            _at(raised.raised_at),
            _at(raised.sla_due_at),
            encode(raised),
        ),
    )
    record_action(
        conn,
        raised.exception_id,
        "raised",
        "matching",
        raised.explanation,
        {"queue": raised.queue, "amount_at_stake": str(raised.amount_at_stake)},
        raised.raised_at,
    )


def exceptions_raised(conn: sqlite3.Connection, about: str, type_: str) -> int:
    """How many exceptions of this type were ever raised about an invoice (or payment)."""
    return conn.execute(
        "SELECT count(*) FROM match_exceptions WHERE type=? AND"
        " (invoice_id=? OR duplicate_of_invoice_id=? OR payment_id=?)",
        (type_, about, about, about),
    ).fetchone()[0]


def exceptions_raised_about_invoice(conn: sqlite3.Connection, invoice_id: str) -> int:
    return conn.execute(
        "SELECT count(*) FROM match_exceptions WHERE invoice_id=?"
        f" AND type IN ({', '.join('?' * len(PROBLEM_ORDER))})",
        (invoice_id, *PROBLEM_ORDER),
    ).fetchone()[0]


def open_exceptions(conn: sqlite3.Connection, invoice_id: str) -> dict[str, sqlite3.Row]:
    rows = conn.execute(
        "SELECT * FROM match_exceptions WHERE invoice_id=? AND status='open' ORDER BY raised_at",
        (invoice_id,),
    )
    return {row["type"]: row for row in rows}


def open_duplicate(conn: sqlite3.Connection, invoice_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM match_exceptions WHERE duplicate_of_invoice_id=? AND status='open'"
        " AND type='DUPLICATE_INVOICE'",
        (invoice_id,),
    ).fetchone()


def update_open_exception(
    conn: sqlite3.Connection, exception_id: str, amount: Decimal, explanation: str, checks: list
) -> None:
    conn.execute(
        "UPDATE match_exceptions SET amount_at_stake=?, explanation=?, checks=?"
        " WHERE exception_id=? AND status='open'",
        (str(amount), explanation, encode(checks), exception_id),
    )


def exception_row(conn: sqlite3.Connection, exception_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM match_exceptions WHERE exception_id=?", (exception_id,)
    ).fetchone()


def raised_event(row: sqlite3.Row) -> MatchExceptionRaised:
    return _raised.decode(row["body"])


def close_exception(
    conn: sqlite3.Connection,
    exception_id: str,
    resolution: str,
    by: str,
    reason: str,
    at: datetime,
    credit_amount: Decimal | None = None,
) -> None:
    conn.execute(
        "UPDATE match_exceptions SET status='resolved', resolution=?, resolved_by=?,"
        " resolved_at=?, resolution_reason=?, credit_amount=? WHERE exception_id=?",
        (
            resolution,
            by,
            _at(at),
            reason,
            str(credit_amount) if credit_amount is not None else None,
            exception_id,
        ),
    )
    details = {"resolution": resolution}
    if credit_amount is not None:
        details["credit_amount"] = str(credit_amount)
    record_action(conn, exception_id, "resolved", by, reason, details, at)


def move_exception(
    conn: sqlite3.Connection, exception_id: str, queue: str, by: str, reason: str, at: datetime
) -> None:
    previous = conn.execute(
        "SELECT queue FROM match_exceptions WHERE exception_id=?", (exception_id,)
    ).fetchone()[0]
    conn.execute("UPDATE match_exceptions SET queue=? WHERE exception_id=?", (queue, exception_id))
    record_action(
        conn,
        exception_id,
        "reassigned",
        by,
        reason,
        {"from_queue": previous, "to_queue": queue},
        at,
    )


def record_action(
    conn: sqlite3.Connection,
    exception_id: str,
    action: str,
    actor: str,
    reason: str,
    details: dict,
    at: datetime,
) -> None:
    conn.execute(
        "INSERT INTO exception_actions (exception_id, action, actor, reason, details, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (exception_id, action, actor, reason, encode(details).decode(), _at(at)),
    )


def actions(conn: sqlite3.Connection, exception_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT action, actor, reason, details, at FROM exception_actions WHERE exception_id=?"
        " ORDER BY seq",
        (exception_id,),
    )
    return [
        {
            "action": row["action"],
            "by": row["actor"],
            "reason": row["reason"],
            "at": row["at"],
            **msgspec.json.decode(row["details"]),
        }
        for row in rows
    ]


EXCEPTION_FILTERS = {
    "queue": "queue=?",
    "type": "type=?",
    "supplier": "supplier_id=?",
    "invoice": "invoice_id=?",
    "po": "po_number=?",
}


def list_exceptions(
    conn: sqlite3.Connection, filters: dict[str, str], status: str | None, limit: int, offset: int
) -> tuple[list[sqlite3.Row], int]:
    return page_of(
        conn,
        select="*",
        source="match_exceptions",
        where={
            **{EXCEPTION_FILTERS[name]: value for name, value in filters.items()},
            "status=?": status,
        },
        order_by="raised_at, exception_id",
        limit=limit,
        offset=offset,
    )


def open_exception_rows(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT queue, type, amount_at_stake, raised_at, sla_due_at FROM match_exceptions"
        " WHERE status='open'"
    ).fetchall()


# -- payments -----------------------------------------------------------------------------------


def payment_known(conn: sqlite3.Connection, payment_id: str) -> bool:
    found = conn.execute("SELECT 1 FROM payments WHERE payment_id=?", (payment_id,))
    return found.fetchone() is not None


def record_payment(conn: sqlite3.Connection, payment: PaymentRelease, at: datetime) -> None:
    conn.execute(
        "INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            payment.payment_id,
            payment.supplier_id,
            str(payment.amount),
            payment.method,
            encode(payment),
            _at(payment.released_at),
            _at(at),
        ),
    )


def record_application(
    conn: sqlite3.Connection,
    payment_id: str,
    position: int,
    invoice_number: str,
    invoice_id: str | None,
    amount: Decimal,
    discount: Decimal,
    outcome: str,
    exception_id: str | None,
) -> None:
    conn.execute(
        "INSERT INTO payment_applications VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            payment_id,
            position,
            invoice_number,
            invoice_id,
            str(amount),
            str(discount),
            outcome,
            exception_id,
        ),
    )


def payments_of(conn: sqlite3.Connection, invoice_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT a.payment_id, a.amount, a.discount, a.outcome, a.exception_id, p.method,"
        " p.released_at FROM payment_applications a JOIN payments p USING (payment_id)"
        " WHERE a.invoice_id=? ORDER BY p.released_at, a.payment_id",
        (invoice_id,),
    )
    return [dict(row) for row in rows]


# -- liabilities --------------------------------------------------------------------------------


def approved_unpaid(
    conn: sqlite3.Connection, supplier_id: str | None
) -> dict[tuple[str, str], Decimal]:
    sql = "SELECT supplier_id, currency, approved_amount FROM invoices WHERE status='approved'"
    params: tuple = ()
    if supplier_id:
        sql += " AND supplier_id=?"
        params = (supplier_id,)
    owed: dict[tuple[str, str], Decimal] = {}
    for row in conn.execute(sql, params):
        key = (row[0], row[1])
        owed[key] = owed.get(key, Decimal(0)) + Decimal(row[2])
    return owed


def claims_by_line(conn: sqlite3.Connection, po_number: str) -> dict[int, tuple[Decimal, Decimal]]:
    """What invoices (not rejected) claim on each line of a PO: quantity and amount."""
    claims: dict[int, tuple[Decimal, Decimal]] = {}
    for row in conn.execute(
        "SELECT a.po_line_number, a.quantity, a.amount FROM invoice_allocations a"
        " JOIN invoices i ON i.invoice_id = a.invoice_id"
        " WHERE a.po_number=? AND i.status != 'rejected'",
        (po_number,),
    ):
        quantity, amount = claims.get(row[0], (Decimal(0), Decimal(0)))
        claims[row[0]] = (quantity + Decimal(row[1]), amount + Decimal(row[2]))
    return claims
