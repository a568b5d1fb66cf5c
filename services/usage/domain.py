"""Usage's rules as plain functions of plain data: the patient token, reading the device a line
names, what an item master says about a usage, the bill-only contract, and when an HL7 sender
wants an acknowledgement. No I/O here; handlers.py feeds these and records what they decide."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import msgspec

from sinew.contracts.common import Quantity
from sinew.contracts.items import Contract, Item
from sinew.contracts.usage import UsageExceptionType, UsageSubmitted
from sinew.masterdata.barcodes import gtin14, parse_udi
from sinew.masterdata.rules import UnknownUnit, contract_price, to_base

GTIN = re.compile(r"^(\d{8}|\d{12,14})$")


def patient_token_for(key: bytes, site: str, mrn: str) -> str:
    """A keyed pseudonym: HMAC-SHA256 of site and MRN under the site's secret key. The same
    patient at the same site always gets the same token, so a rebuild from stream history gives
    back the tokens other services already hold; without the key, no one holding a token and a
    list of MRNs can link them, and the same MRN at two sites gives two unrelated tokens."""
    digest = hmac.new(key, f"{site}:{mrn}".encode(), hashlib.sha256).hexdigest()
    return f"pt-{digest[:32]}"


class Conflict(ValueError):
    """The line contradicts itself (its UDI says one lot, its lot field another)."""


class UsageLine(msgspec.Struct, frozen=True, kw_only=True):
    """One usage as Sinew keeps it: what the EHR said, the patient as a token, the device's
    identifiers read out of its UDI. Kept whole so a held usage can be evaluated again."""

    source_usage_id: str
    case_id: str
    procedure_code: str
    physician_id: str
    location_id: str
    patient_token: str
    quantity: Quantity
    used_at: datetime
    source_format: str
    item_id: str | None = None
    gtin: str | None = None
    udi: str | None = None
    udi_issuer: str | None = None
    device_identifier: str | None = None
    lot: str | None = None
    serial: str | None = None
    expiry: date | None = None
    procedure_name: str | None = None
    ehr_bill_only: bool | None = None

    @property
    def item_key(self) -> str:
        """What named the item, in the form the item master indexes it."""
        if self.item_id:
            return f"id:{self.item_id}"
        if self.gtin:
            return f"gtin:{gtin14(self.gtin)}"
        if self.udi_issuer == "GS1":
            return f"gtin:{self.device_identifier}"
        return f"udi:{self.device_identifier}"


def read_line(submitted: UsageSubmitted, patient_token: str, source_format: str) -> UsageLine:
    """The line with the patient swapped for the token and its UDI read. Raises BarcodeError
    for an unreadable UDI and Conflict when the UDI and the fields disagree."""
    lot, serial, expiry, gtin = submitted.lot, submitted.serial, submitted.expiry, submitted.gtin
    issuer = device_identifier = None
    if submitted.udi:
        scanned = parse_udi(submitted.udi)
        issuer, device_identifier = scanned.issuer, scanned.device_identifier
        for name, stated, carried in (
            ("lot", lot, scanned.lot),
            ("serial", serial, scanned.serial),
            ("expiry", expiry, scanned.expiry),
            ("GTIN", gtin and gtin14(gtin), scanned.gtin),
        ):
            if stated and carried and stated != carried:
                raise Conflict(f"{name} {stated} disagrees with {name} {carried} in the UDI")
        lot, serial, expiry = lot or scanned.lot, serial or scanned.serial, expiry or scanned.expiry
    return UsageLine(
        source_usage_id=submitted.source_usage_id,
        case_id=submitted.case_id,
        procedure_code=submitted.procedure_code,
        procedure_name=submitted.procedure_name,
        physician_id=submitted.physician_id,
        location_id=submitted.location_id,
        patient_token=patient_token,
        quantity=submitted.quantity,
        used_at=submitted.used_at,
        source_format=source_format,
        item_id=submitted.item_id,
        gtin=gtin,
        udi=submitted.udi,
        udi_issuer=issuer,
        device_identifier=device_identifier,
        lot=lot,
        serial=serial,
        expiry=expiry,
        ehr_bill_only=submitted.bill_only,
    )


def item_keys(item: Item) -> set[str]:
    """Every key a usage may have named this item by (see UsageLine.item_key)."""
    keys = {f"id:{item.item_id}"}
    keys |= {f"gtin:{gtin14(g)}" for g in [item.gtin, *(p.gtin for p in item.packs)] if g}
    if item.udi_di:
        keys.add(f"udi:{item.udi_di}")
        if GTIN.match(item.udi_di):
            keys.add(f"gtin:{gtin14(item.udi_di)}")
    return keys


@dataclass(frozen=True)
class Finding:
    type: UsageExceptionType
    explanation: str


def documentation_findings(item: Item, line: UsageLine) -> list[Finding]:
    """What is wrong with how a usage of this item was documented. The unit left the shelf all
    the same, so these never stop the usage from being recorded."""
    findings = []
    kind = "implant" if item.implant else "item"
    if item.lot_controlled and not line.lot:
        findings.append(
            Finding("LOT_REQUIRED", f"{kind} {item.item_id} is lot-controlled; no lot was given")
        )
    if item.serial_controlled and not line.serial:
        findings.append(
            Finding(
                "SERIAL_REQUIRED",
                f"{kind} {item.item_id} is serial-controlled; no serial was given",
            )
        )
    if line.expiry and line.expiry < line.used_at.date():
        findings.append(
            Finding(
                "EXPIRED_LOT",
                f"lot {line.lot or '(none given)'} of {item.item_id} expired on "
                f"{line.expiry.isoformat()}, before its use on {line.used_at.date().isoformat()}",
            )
        )
    return findings


def unknown_item(line: UsageLine) -> Finding:
    named = line.item_id or line.gtin or line.udi or line.device_identifier
    return Finding("UNKNOWN_ITEM", f"the item master has no item {named}; the usage is held")


def unknown_unit(problem: UnknownUnit) -> Finding:
    return Finding("UNKNOWN_ITEM", f"{problem}; the usage is held until the item master has it")


def unknown_location(line: UsageLine) -> Finding:
    return Finding(
        "UNKNOWN_LOCATION",
        f"the item master has no location {line.location_id}; the usage is held",
    )


def serial_already_used(item_id: str, serial: str, case_id: str, other_case_id: str) -> Finding:
    where = "this same case" if case_id == other_case_id else f"case {other_case_id}"
    return Finding(
        "SERIAL_ALREADY_USED",
        f"serial {serial} of {item_id} is already recorded as used in {where}; a serialised "
        "unit is used once, so this usage is held until one of the two is voided",
    )


def base_quantity(item: Item, quantity: Quantity) -> Quantity:
    """The quantity in the item's base unit (raises UnknownUnit for a unit the item lacks)."""
    return Quantity(value=to_base(item, quantity), uom=item.base_uom)


@dataclass(frozen=True)
class BillOnlySource:
    supplier_id: str | None
    contract_number: str | None


def bill_only_source(
    item: Item, contracts: Iterable[Contract], on: date, quantity: Quantity
) -> BillOnlySource:
    """Who bills a consigned item and under which contract: the item's own suppliers first (in
    the item master's order), then any supplier with a contract for it; the contract must be in
    force on the day of use. Without one, procurement still gets the request, with no contract
    for it to price from."""
    contracts = list(contracts)
    suppliers = [p.supplier_id for p in item.supplier_parts]
    suppliers += [c.supplier_id for c in contracts if c.supplier_id not in suppliers]
    for supplier_id in suppliers:
        try:
            quote = contract_price(item, contracts, supplier_id, on, quantity)
        except UnknownUnit:
            continue
        if quote is not None:
            return BillOnlySource(supplier_id, quote.contract_number)
    return BillOnlySource(suppliers[0] if suppliers else None, None)


# -- HL7 acknowledgements ---------------------------------------------------------------------

# Dead-letter causes that mean the message itself was refused (not readable, unsupported type
# or version) get AR; a readable message whose content is wrong gets AE.
REJECTED_CAUSES = {"malformed", "unknown_contract", "oversized"}


def ack_code_for_dead_letter(cause: str) -> str:
    return "AR" if cause in REJECTED_CAUSES else "AE"


def ack_wanted(accept_ack: str, application_ack: str, code: str) -> bool:
    """MSH-15/MSH-16: AL always, NE never, ER only on error, SU only on success. With neither
    (original acknowledgement mode) the sender always expects one. Sinew answers once, after
    processing, so the application condition rules when given, else the accept condition."""
    condition = (application_ack or accept_ack or "AL").upper()
    if condition == "NE":
        return False
    if condition == "ER":
        return code != "AA"
    if condition == "SU":
        return code == "AA"
    return True


def redact(text: str, protected: Iterable[str]) -> str:
    """Take patient identifiers out of a validator's message before it is stored, logged or
    published: some messages quote the offending value."""
    for value in sorted({v for v in protected if len(v) >= 2}, key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", "[redacted]", text)
    return text
