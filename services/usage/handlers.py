"""Usage's handlers: EHR usage lines and voids in (JSON, HL7, FHIR), master data in; procedure
usage recorded or voided, usage exceptions and bill-only requests out.

Every line ends in exactly one of: recorded (an inventory effect), held with an open exception
that says why, or voided. A held line is evaluated again whenever what held it changes: the item
or location arrives in the item master, or the usage that already holds its serial is voided.

"Now" is the time of the message being handled (`ctx.envelope.time`), so a rebuild from stream
history records the same times. Ids derive from the EHR's line id, so they are stable too, and
the patient token derives from the MRN under the site's secret key (`ctx.config`), so a rebuild
issues the very tokens the live service did.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from datetime import datetime

import msgspec

from sinew.common.context import Context
from sinew.common.errors import Invalid
from sinew.contracts.items import ContractUpserted, ItemUpserted, LocationUpserted
from sinew.contracts.usage import (
    BillOnlyRequested,
    ProcedureUsageRecorded,
    ProcedureUsageVoided,
    UsageExceptionCleared,
    UsageExceptionRaised,
    UsageSubmitted,
    UsageVoidSubmitted,
)
from sinew.masterdata import replica
from sinew.masterdata.barcodes import BarcodeError, gtin14
from sinew.masterdata.replica import MasterData
from sinew.masterdata.rules import UnknownUnit

from . import hl7
from .documents import ClinicalDocument
from .domain import (
    Conflict,
    Finding,
    UsageLine,
    ack_wanted,
    base_quantity,
    bill_only_source,
    documentation_findings,
    item_keys,
    patient_token_for,
    read_line,
    serial_already_used,
    unknown_item,
    unknown_location,
    unknown_unit,
)

log = logging.getLogger("sinew.usage")

SERVICE = "usage"  # who clears an exception that clears by itself
_encode = msgspec.json.Encoder(decimal_format="string").encode
_decode_line = msgspec.json.Decoder(UsageLine).decode
_decode_recorded = msgspec.json.Decoder(ProcedureUsageRecorded).decode


def _now(ctx: Context) -> datetime:
    return ctx.envelope.time


def usage_id_for(site: str, source_usage_id: str) -> str:
    return f"USE-{uuid.uuid5(uuid.NAMESPACE_URL, f'{site}:{source_usage_id}').hex[:16].upper()}"


# -- patient tokens ---------------------------------------------------------------------------


def patient_token(ctx: Context, mrn: str) -> str:
    """One token per MRN at this site, derived on first sight and kept in `patients`: recall
    answers from there, and a patient keeps the token already issued even after a key rotation."""
    row = ctx.db.execute("SELECT patient_token FROM patients WHERE mrn=?", (mrn,)).fetchone()
    if row:
        return row[0]
    token = patient_token_for(ctx.config.patient_token_key, ctx.site, mrn)
    ctx.db.execute("INSERT INTO patients VALUES (?, ?, ?)", (mrn, token, _now(ctx).isoformat()))
    ctx.db.execute(
        "INSERT OR IGNORE INTO patient_token_keys VALUES (?, ?)",
        (ctx.config.key_fingerprint, _now(ctx).isoformat()),
    )
    return token


# -- usage lines in ---------------------------------------------------------------------------


def on_usage(submitted: UsageSubmitted, ctx: Context) -> None:
    take_usage(ctx, submitted, "json")


def on_void(withdrawn: UsageVoidSubmitted, ctx: Context) -> None:
    take_void(ctx, withdrawn)


def on_document(document: ClinicalDocument, ctx: Context) -> None:
    """An HL7 or FHIR document: its lines and voids in order, then its HL7 ACK if asked for."""
    for submitted in document.usages:
        take_usage(ctx, submitted, document.source_format)
    for withdrawn in document.voids:
        take_void(ctx, withdrawn)
    if document.ack is not None:
        queue_ack(ctx, document.ack, "AA", "")


def take_usage(ctx: Context, submitted: UsageSubmitted, source_format: str) -> None:
    usage_id = usage_id_for(ctx.site, submitted.source_usage_id)
    if ctx.db.execute("SELECT 1 FROM usages WHERE usage_id=?", (usage_id,)).fetchone():
        # The EHR sent the same line again under a new message id: it was taken once already.
        log.info("usage line %s already taken; ignored", submitted.source_usage_id)
        return
    token = patient_token(ctx, submitted.mrn)
    try:
        line = read_line(submitted, token, source_format)
    except BarcodeError as error:
        raise Invalid(f"line {submitted.source_usage_id}: UDI unreadable: {error}") from None
    except Conflict as error:
        raise Invalid(f"line {submitted.source_usage_id}: {error}") from None
    ctx.db.execute(
        "INSERT INTO usages (usage_id, source_usage_id, status, item_key, case_id, location_id,"
        " patient_token, item_id, gtin, lot, serial, expiry, used_at, source_format, line,"
        " received_at) VALUES (?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            usage_id,
            line.source_usage_id,
            line.item_key,
            line.case_id,
            line.location_id,
            line.patient_token,
            line.item_id,
            _gtin_column(
                line.gtin or (line.device_identifier if line.udi_issuer == "GS1" else None)
            ),
            line.lot,
            line.serial,
            line.expiry.isoformat() if line.expiry else None,
            line.used_at.isoformat(),
            source_format,
            _encode(line),
            _now(ctx).isoformat(),
        ),
    )
    pending = ctx.db.execute(
        "SELECT * FROM pending_voids WHERE source_usage_id=?", (line.source_usage_id,)
    ).fetchone()
    if pending is not None:
        _arrived_voided(ctx, usage_id, line, pending)
        return
    settle(ctx, usage_id)


def _gtin_column(gtin: str | None) -> str | None:
    # Kept as GTIN-14 in the index, so a recall by any length of the same GTIN finds it.
    return gtin14(gtin) if gtin else None


def _arrived_voided(ctx: Context, usage_id: str, line: UsageLine, pending: sqlite3.Row) -> None:
    """The void came first: the usage is kept in the index but never applied."""
    ctx.db.execute(
        "UPDATE usages SET status='voided', voided_at=?, void_reason=? WHERE usage_id=?",
        (pending["voided_at"], pending["reason"], usage_id),
    )
    ctx.db.execute("DELETE FROM pending_voids WHERE source_usage_id=?", (line.source_usage_id,))
    _clear(
        ctx,
        pending["exception_id"],
        "voided",
        usage_id=None,
        reason="the usage arrived after its void; it was never applied",
    )


def settle(ctx: Context, usage_id: str) -> None:
    """Evaluate a line that is not recorded yet: hold it with an exception, or record it."""
    row = ctx.db.execute("SELECT * FROM usages WHERE usage_id=?", (usage_id,)).fetchone()
    line = _decode_line(row["line"])
    md = MasterData(ctx.db)
    item = find_item(md, line)
    if item is None:
        hold(ctx, row, line, unknown_item(line))
        return
    try:
        base = base_quantity(item, line.quantity)
    except UnknownUnit as problem:
        hold(ctx, row, line, unknown_unit(problem), item_key=f"id:{item.item_id}")
        return
    if md.location(line.location_id) is None:
        hold(ctx, row, line, unknown_location(line))
        return
    if line.serial:
        other = ctx.db.execute(
            "SELECT case_id FROM usages WHERE item_id=? AND serial=? AND status='recorded'"
            " AND usage_id != ? LIMIT 1",
            (item.item_id, line.serial, usage_id),
        ).fetchone()
        if other is not None:
            hold(
                ctx,
                row,
                line,
                serial_already_used(item.item_id, line.serial, line.case_id, other["case_id"]),
                item_key=f"serial:{item.item_id}:{line.serial}",
            )
            return
    record(ctx, row, line, item, base)


def find_item(md: MasterData, line: UsageLine) -> ItemUpserted | None:
    if line.item_id:
        return md.item(line.item_id)
    if line.gtin:
        found = md.item_by_code(gtin=line.gtin)
    elif line.udi_issuer == "GS1":
        found = md.item_by_code(gtin=line.device_identifier) or md.item_by_code(
            udi_di=line.device_identifier
        )
    else:
        found = md.item_by_code(udi_di=line.device_identifier)
    return found[0] if found else None


def hold(
    ctx: Context, row: sqlite3.Row, line: UsageLine, finding: Finding, item_key: str | None = None
) -> None:
    """Hold the line with an open exception; one open hold per line, re-raised only when the
    reason changes (an item that arrives with no location yet moves the hold on)."""
    current = _open_hold(ctx.db, line.source_usage_id)
    if current is not None and current["type"] == finding.type:
        if current["explanation"] != finding.explanation:
            _raise(ctx, line, finding, held=True, exception_id=current["exception_id"])
        ctx.db.execute(
            "UPDATE usages SET item_key=? WHERE usage_id=?",
            (item_key or line.item_key, row["usage_id"]),
        )
        return
    if current is not None:
        _clear(ctx, current["exception_id"], _resolution(current["type"]), usage_id=None)
    ctx.db.execute(
        "UPDATE usages SET status='held', hold_type=?, item_key=? WHERE usage_id=?",
        (finding.type, item_key or line.item_key, row["usage_id"]),
    )
    _raise(ctx, line, finding, held=True)


def record(ctx: Context, row: sqlite3.Row, line: UsageLine, item: ItemUpserted, base) -> None:
    md = MasterData(ctx.db)
    usage_id = row["usage_id"]
    source = None
    if item.consignment:
        source = bill_only_source(
            item, md.contracts_for(item.item_id), line.used_at.date(), line.quantity
        )
    recorded = ProcedureUsageRecorded(
        site=ctx.site,
        usage_id=usage_id,
        source_usage_id=line.source_usage_id,
        case_id=line.case_id,
        procedure_code=line.procedure_code,
        procedure_name=line.procedure_name,
        physician_id=line.physician_id,
        location_id=line.location_id,
        item_id=item.item_id,
        quantity=line.quantity,
        base_quantity=base,
        used_at=line.used_at,
        patient_token=line.patient_token,
        gtin=line.gtin or (line.device_identifier if line.udi_issuer == "GS1" else item.gtin),
        udi=line.udi,
        lot=line.lot,
        serial=line.serial,
        expiry=line.expiry,
        implant=item.implant,
        consignment=item.consignment,
        bill_only=item.consignment,
        supplier_id=source.supplier_id if source else None,
        contract_number=source.contract_number if source else None,
        source_format=line.source_format,
        recorded_at=_now(ctx),
    )
    ctx.db.execute(
        "UPDATE usages SET status='recorded', hold_type=NULL, item_id=?, gtin=?, recorded=?,"
        " recorded_at=? WHERE usage_id=?",
        (
            item.item_id,
            _gtin_column(recorded.gtin),
            _encode(recorded),
            _now(ctx).isoformat(),
            usage_id,
        ),
    )
    ctx.emit(recorded, about=line.case_id)
    held = _open_hold(ctx.db, line.source_usage_id)
    if held is not None:
        _clear(ctx, held["exception_id"], _resolution(held["type"]), usage_id=usage_id)
    for finding in documentation_findings(item, line):
        _raise(ctx, line, finding, held=False, usage_id=usage_id, item_id=item.item_id)
    if item.consignment:
        ctx.emit(
            BillOnlyRequested(
                site=ctx.site,
                request_id=f"BOR-{usage_id.removeprefix('USE-')}",
                usage_id=usage_id,
                case_id=line.case_id,
                procedure_code=line.procedure_code,
                physician_id=line.physician_id,
                location_id=line.location_id,
                item_id=item.item_id,
                quantity=line.quantity,
                used_at=line.used_at,
                lot=line.lot,
                serial=line.serial,
                expiry=line.expiry,
                supplier_id=source.supplier_id,
                contract_number=source.contract_number,
                requested_at=_now(ctx),
            ),
            about=line.case_id,
        )


# -- voids ------------------------------------------------------------------------------------


def take_void(ctx: Context, withdrawn: UsageVoidSubmitted) -> None:
    """Reverse a line's effects exactly once. A void for a line not seen yet is kept, with a
    held VOID_OF_UNKNOWN_USAGE exception, until the line arrives (then it is never applied)."""
    row = ctx.db.execute(
        "SELECT * FROM usages WHERE source_usage_id=?", (withdrawn.source_usage_id,)
    ).fetchone()
    if row is None:
        _keep_void(ctx, withdrawn)
        return
    if row["case_id"] != withdrawn.case_id:
        raise Invalid(
            f"void of line {withdrawn.source_usage_id} names case {withdrawn.case_id}, "
            f"but the line was used in case {row['case_id']}"
        )
    if row["status"] in ("voided", "dismissed"):
        return  # already withdrawn: a second void changes nothing
    ctx.db.execute(
        "UPDATE usages SET status='voided', voided_at=?, void_reason=? WHERE usage_id=?",
        (withdrawn.voided_at.isoformat(), withdrawn.reason, row["usage_id"]),
    )
    for exception in _open_exceptions(ctx.db, withdrawn.source_usage_id):
        _clear(
            ctx,
            exception["exception_id"],
            "voided",
            usage_id=row["usage_id"] if row["status"] == "recorded" else None,
            reason=withdrawn.reason,
        )
    if row["status"] != "recorded":
        return  # a held line had no effect to reverse
    recorded = _decode_recorded(row["recorded"])
    ctx.emit(
        ProcedureUsageVoided(
            site=ctx.site,
            usage_id=recorded.usage_id,
            source_usage_id=recorded.source_usage_id,
            case_id=recorded.case_id,
            location_id=recorded.location_id,
            item_id=recorded.item_id,
            quantity=recorded.quantity,
            base_quantity=recorded.base_quantity,
            lot=recorded.lot,
            serial=recorded.serial,
            bill_only=recorded.bill_only,
            reason=withdrawn.reason,
            voided_at=withdrawn.voided_at,
        ),
        about=recorded.case_id,
    )
    if recorded.serial:
        _release_serial(ctx, recorded.item_id, recorded.serial)


def _keep_void(ctx: Context, withdrawn: UsageVoidSubmitted) -> None:
    if ctx.db.execute(
        "SELECT 1 FROM pending_voids WHERE source_usage_id=?", (withdrawn.source_usage_id,)
    ).fetchone():
        return
    exception_id = _exception_id(ctx.db, withdrawn.source_usage_id, "VOID_OF_UNKNOWN_USAGE")
    ctx.db.execute(
        "INSERT INTO pending_voids VALUES (?, ?, ?, ?, ?)",
        (
            withdrawn.source_usage_id,
            withdrawn.case_id,
            withdrawn.voided_at.isoformat(),
            withdrawn.reason,
            exception_id,
        ),
    )
    raised = UsageExceptionRaised(
        site=ctx.site,
        exception_id=exception_id,
        type="VOID_OF_UNKNOWN_USAGE",
        explanation=(
            f"a void arrived for line {withdrawn.source_usage_id} of case {withdrawn.case_id}, "
            "which Sinew has not received; the void is held and the line will not be applied "
            "if it arrives"
        ),
        held=True,
        source_usage_id=withdrawn.source_usage_id,
        case_id=withdrawn.case_id,
        raised_at=_now(ctx),
    )
    _store_raised(ctx.db, raised)
    ctx.emit(raised, about=withdrawn.case_id)


def _release_serial(ctx: Context, item_id: str, serial: str) -> None:
    """The unit's recorded use is gone: the first line held for reusing its serial may go."""
    waiting = ctx.db.execute(
        "SELECT usage_id FROM usages WHERE status='held' AND hold_type='SERIAL_ALREADY_USED'"
        " AND item_key=? ORDER BY used_at, usage_id LIMIT 1",
        (f"serial:{item_id}:{serial}",),
    ).fetchone()
    if waiting is not None:
        settle(ctx, waiting["usage_id"])


# -- master data ------------------------------------------------------------------------------


def on_item(item: ItemUpserted, ctx: Context) -> None:
    """Keep the item; then every line held for not knowing it is evaluated again."""
    if not replica.apply(ctx.db, item):
        return
    keys = sorted(item_keys(item))
    marks = ", ".join("?" * len(keys))
    waiting = ctx.db.execute(
        "SELECT usage_id FROM usages WHERE status='held' AND hold_type='UNKNOWN_ITEM'"
        f" AND item_key IN ({marks}) ORDER BY used_at, usage_id",
        keys,
    ).fetchall()
    for row in waiting:
        settle(ctx, row["usage_id"])


def on_location(location: LocationUpserted, ctx: Context) -> None:
    if not replica.apply(ctx.db, location):
        return
    waiting = ctx.db.execute(
        "SELECT usage_id FROM usages WHERE status='held' AND hold_type='UNKNOWN_LOCATION'"
        " AND location_id=? ORDER BY used_at, usage_id",
        (location.location_id,),
    ).fetchall()
    for row in waiting:
        settle(ctx, row["usage_id"])


def on_contract(contract: ContractUpserted, ctx: Context) -> None:
    replica.apply(ctx.db, contract)


# -- exceptions -------------------------------------------------------------------------------


def _exception_id(conn: sqlite3.Connection, source_usage_id: str, type_: str) -> str:
    # The n-th exception of this type on this line: stable across retries and rebuilds.
    n = conn.execute(
        "SELECT count(*) FROM usage_exceptions WHERE source_usage_id=? AND type=?",
        (source_usage_id, type_),
    ).fetchone()[0]
    seed = f"{source_usage_id}:{type_}:{n}"
    return f"UEX-{uuid.uuid5(uuid.NAMESPACE_URL, seed).hex[:16].upper()}"


def _raise(
    ctx: Context,
    line: UsageLine,
    finding: Finding,
    *,
    held: bool,
    exception_id: str | None = None,
    usage_id: str | None = None,
    item_id: str | None = None,
) -> None:
    raised = UsageExceptionRaised(
        site=ctx.site,
        exception_id=exception_id or _exception_id(ctx.db, line.source_usage_id, finding.type),
        type=finding.type,
        explanation=finding.explanation,
        held=held,
        source_usage_id=line.source_usage_id,
        case_id=line.case_id,
        location_id=line.location_id,
        usage_id=usage_id,
        item_id=item_id or line.item_id,
        gtin=line.gtin,
        udi=line.udi,
        lot=line.lot,
        serial=line.serial,
        expiry=line.expiry,
        raised_at=_now(ctx),
    )
    _store_raised(ctx.db, raised)
    ctx.emit(raised, about=line.case_id)


def _store_raised(conn: sqlite3.Connection, raised: UsageExceptionRaised) -> None:
    conn.execute(
        "INSERT INTO usage_exceptions (exception_id, type, source_usage_id, usage_id, case_id,"
        " location_id, held, explanation, status, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
        " 'open', ?) ON CONFLICT(exception_id) DO UPDATE SET explanation=excluded.explanation",
        (
            raised.exception_id,
            raised.type,
            raised.source_usage_id,
            raised.usage_id,
            raised.case_id,
            raised.location_id,
            int(raised.held),
            raised.explanation,
            raised.raised_at.isoformat(),
        ),
    )


def _clear(
    ctx: Context,
    exception_id: str,
    resolution: str,
    *,
    usage_id: str | None,
    cleared_by: str = SERVICE,
    reason: str | None = None,
) -> None:
    exception = ctx.db.execute(
        "SELECT * FROM usage_exceptions WHERE exception_id=? AND status='open'", (exception_id,)
    ).fetchone()
    if exception is None:
        return
    ctx.db.execute(
        "UPDATE usage_exceptions SET status='cleared', cleared_at=?, resolution=?, cleared_by=?,"
        " reason=? WHERE exception_id=?",
        (_now(ctx).isoformat(), resolution, cleared_by, reason, exception_id),
    )
    ctx.emit(
        UsageExceptionCleared(
            site=ctx.site,
            exception_id=exception_id,
            type=exception["type"],
            source_usage_id=exception["source_usage_id"],
            resolution=resolution,
            cleared_by=cleared_by,
            usage_id=usage_id,
            reason=reason,
            cleared_at=_now(ctx),
        ),
        about=exception["case_id"],
    )


def _resolution(hold_type: str) -> str:
    # A hold that ends by itself ends because what it waited for changed.
    return {"UNKNOWN_LOCATION": "location_added", "SERIAL_ALREADY_USED": "voided"}.get(
        hold_type, "item_master_updated"
    )


def _open_hold(conn: sqlite3.Connection, source_usage_id: str) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM usage_exceptions WHERE source_usage_id=? AND status='open' AND held=1"
        " ORDER BY raised_at LIMIT 1",
        (source_usage_id,),
    ).fetchone()


def _open_exceptions(conn: sqlite3.Connection, source_usage_id: str) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT * FROM usage_exceptions WHERE source_usage_id=? AND status='open'",
        (source_usage_id,),
    ).fetchall()


def dismiss(ctx: Context, exception_id: str, by: str, reason: str) -> dict | None:
    """A person closes an exception. Dismissing a hold means the held line never applies."""
    exception = ctx.db.execute(
        "SELECT * FROM usage_exceptions WHERE exception_id=?", (exception_id,)
    ).fetchone()
    if exception is None:
        return None
    if exception["status"] != "open":
        return {"exception_id": exception_id, "status": exception["status"], "changed": False}
    if exception["held"]:
        ctx.db.execute(
            "UPDATE usages SET status='dismissed', hold_type=NULL WHERE source_usage_id=?"
            " AND status='held'",
            (exception["source_usage_id"],),
        )
        ctx.db.execute("DELETE FROM pending_voids WHERE exception_id=?", (exception_id,))
    _clear(
        ctx,
        exception_id,
        "dismissed",
        usage_id=exception["usage_id"],
        cleared_by=by,
        reason=reason,
    )
    return {"exception_id": exception_id, "status": "cleared", "changed": True}


# -- HL7 acknowledgements ---------------------------------------------------------------------


def queue_ack(ctx: Context, request, code: str, text: str) -> None:
    """Written in the transaction, sent after it commits (acks.py): an ACK is never sent for
    something that then rolls back."""
    ack_id = f"ACK-{uuid.uuid5(uuid.NAMESPACE_URL, f'{ctx.id_seed}:ack').hex[:16].upper()}"
    wanted = ack_wanted(request.accept_ack, request.application_ack, code)
    message = (
        hl7.build_ack(request, code, text, site=ctx.site, control_id=ack_id, at=_now(ctx))
        if wanted
        else None
    )
    ctx.db.execute(
        "INSERT OR IGNORE INTO hl7_acks (ack_id, reply_to, code, control_id, message, created_at,"
        " state) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            ack_id,
            request.reply_to,
            code,
            request.control_id,
            message,
            _now(ctx).isoformat(),
            "pending" if wanted else "not_requested",
        ),
    )


HANDLERS = {
    UsageSubmitted: on_usage,
    UsageVoidSubmitted: on_void,
    ClinicalDocument: on_document,
    ItemUpserted: on_item,
    LocationUpserted: on_location,
    ContractUpserted: on_contract,
}
