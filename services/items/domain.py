"""The rules of the item master, as plain functions of plain data: what makes a record
acceptable beyond its contract, which version it gets, the canonical event it becomes and the
replica (KV) entries that carry it to other systems."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

import biip
import msgspec
from biip.gln import Gln
from biip.gtin import Gtin

from sinew.common.natsconfig import items_bucket
from sinew.contracts.items import (
    Contract,
    ContractUpsert,
    ContractUpserted,
    CostCentre,
    CostCentreUpsert,
    CostCentreUpserted,
    Item,
    ItemUpsert,
    ItemUpserted,
    Location,
    LocationUpsert,
    LocationUpserted,
    Substitution,
    SubstitutionUpsert,
    SubstitutionUpserted,
    Supplier,
    SupplierUpsert,
    SupplierUpserted,
)
from sinew.masterdata.barcodes import gtin14
from sinew.masterdata.rules import UnknownUnit, base_units_per

_encoder = msgspec.json.Encoder(decimal_format="string")


@dataclass(frozen=True)
class Kind:
    """One kind of master-data record and every form it takes."""

    name: str  # as in the MDM feed's "kind" and the replica's md_records
    record: type
    upsert: type  # what the MDM feed sends
    upserted: type  # the canonical event
    identity: str  # the field that names one record
    collection: str  # its HTTP collection, /v1/<collection>/{id}


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in [
        Kind("item", Item, ItemUpsert, ItemUpserted, "item_id", "items"),
        Kind("supplier", Supplier, SupplierUpsert, SupplierUpserted, "supplier_id", "suppliers"),
        Kind(
            "contract", Contract, ContractUpsert, ContractUpserted, "contract_number", "contracts"
        ),
        Kind(
            "substitution",
            Substitution,
            SubstitutionUpsert,
            SubstitutionUpserted,
            "substitution_id",
            "substitutions",
        ),
        Kind("location", Location, LocationUpsert, LocationUpserted, "location_id", "locations"),
        Kind(
            "cost-centre",
            CostCentre,
            CostCentreUpsert,
            CostCentreUpserted,
            "cost_centre_id",
            "cost-centres",
        ),
    ]
}
_BY_TYPE = {t: k for k in KINDS.values() for t in (k.record, k.upsert, k.upserted)}


def kind_of(record: Any) -> Kind:
    return _BY_TYPE[type(record)]


def identity_of(record: Any) -> str:
    return getattr(record, kind_of(record).identity)


class Rejected(ValueError):
    """The record breaks a rule of the item master; the sender must fix it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class VersionConflict(ValueError):
    def __init__(self, kind: str, identity: str, held: int, requested: int) -> None:
        super().__init__(
            f"{kind} {identity} is at version {held}; version {requested} is not newer"
        )
        self.held = held
        self.requested = requested


# -- versions ---------------------------------------------------------------------------------


def is_newer(held: int | None, version: int) -> bool:
    return held is None or version > held


def api_version(kind: str, identity: str, held: int | None, requested: int | None) -> int:
    """The version a change over the API gets: the next one, or the caller's if it is newer."""
    if requested is None:
        return (held or 0) + 1
    if not is_newer(held, requested):
        raise VersionConflict(kind, identity, held or 0, requested)
    return requested


def canonical(record: Any, source: str, upserted_at: datetime) -> Any:
    kind = kind_of(record)
    fields = {name: getattr(record, name) for name in kind.record.__struct_fields__}
    return kind.upserted(**fields, source=source, upserted_at=upserted_at)


# -- rules a record must meet on its own --------------------------------------------------------

# ANSI/HIBC 2.6 primary: labeler (letter + 3 alphanumerics), product (1-18), unit of measure digit.
HIBC_PRIMARY = re.compile(r"^[A-Z][A-Z0-9]{3}[A-Z0-9]{1,18}[0-8]$")


def _gtin_problem(value: str, what: str) -> str | None:
    try:
        Gtin.parse(value)
    except biip.ParseError as error:
        return f"{what} {value}: {error}"
    return None


def _money_problem(value: Decimal, what: str) -> str | None:
    if not value.is_finite() or value < 0:
        return f"{what} {value} must be a finite amount of at least 0"
    return None


def _dates_problem(start: date | None, end: date | None) -> str | None:
    if start and end and end < start:
        return f"effective_to {end} is before effective_from {start}"
    return None


def _duplicates(values: Iterable[Any]) -> list[Any]:
    return [value for value, n in Counter(values).items() if n > 1]


def item_codes(item: Item) -> dict[str, str]:
    """Every code that names the item (as the replica indexes them), with the unit it packs."""
    codes = {}
    if item.gtin:
        codes[f"gtin:{gtin14(item.gtin)}"] = item.base_uom
    for pack in item.packs:
        if pack.gtin:
            codes[f"gtin:{gtin14(pack.gtin)}"] = pack.uom
    if item.udi_di:
        codes[f"udi:{item.udi_di}"] = item.base_uom
    return codes


def _item_problems(item: Item) -> Iterable[str | None]:
    uoms = [item.base_uom, *(p.uom for p in item.packs)]
    for uom in _duplicates(uoms):
        yield f"unit of measure {uom} is listed more than once (base unit and packs)"
    gtins = [(item.gtin, "gtin")] if item.gtin else []
    gtins += [(p.gtin, f"pack {p.uom} gtin") for p in item.packs if p.gtin]
    for value, what in gtins:
        yield _gtin_problem(value, what)
    for value in _duplicates(gtin14(value) for value, _ in gtins):
        yield f"GTIN {value} names more than one packaging level"
    if bool(item.udi_di) != bool(item.udi_issuer):
        yield "udi_di and udi_issuer go together: give both or neither"
    if item.udi_di and item.udi_issuer == "GS1":
        if len(item.udi_di) != 14:
            yield f"GS1 udi_di {item.udi_di} must be written as a GTIN-14, as scanners read it"
        else:
            yield _gtin_problem(item.udi_di, "GS1 udi_di")
    if item.udi_di and item.udi_issuer == "HIBCC" and not HIBC_PRIMARY.match(item.udi_di):
        yield (
            f"HIBCC udi_di {item.udi_di} is not labeler (letter + 3) + product (1-18)"
            " + unit of measure digit"
        )
    for supplier_id, part in _duplicates(
        (p.supplier_id, p.part_number) for p in item.supplier_parts
    ):
        yield f"supplier part {supplier_id}/{part} is listed more than once"
    for part in item.supplier_parts:
        if part.uom and part.uom not in uoms:
            yield f"supplier part {part.supplier_id}/{part.part_number}: {_unit_text(item, part.uom)}"


def _unit_text(item: Item, uom: str) -> str:
    try:
        base_units_per(item, uom)
    except UnknownUnit as error:
        return str(error)
    return ""


def _supplier_problems(supplier: Supplier) -> Iterable[str | None]:
    if supplier.gln:
        try:
            Gln.parse(supplier.gln)
        except biip.ParseError as error:
            yield f"gln {supplier.gln}: {error}"


def _contract_problems(contract: Contract) -> Iterable[str | None]:
    yield _dates_problem(contract.effective_from, contract.effective_to)
    for item_id, uom in _duplicates((p.item_id, p.uom) for p in contract.prices):
        yield f"item {item_id} is priced per {uom} more than once"
    for price in contract.prices:
        where = f"price of {price.item_id} per {price.uom}"
        yield _money_problem(price.unit_price, f"{where}: unit_price")
        for quantity in _duplicates(t.min_quantity for t in price.tiers):
            yield f"{where}: two tiers start at {quantity}"
        for tier in price.tiers:
            yield _money_problem(tier.unit_price, f"{where}: tier from {tier.min_quantity}")


def _substitution_problems(substitution: Substitution) -> Iterable[str | None]:
    if substitution.item_id == substitution.substitute_item_id:
        yield f"item {substitution.item_id} cannot substitute for itself"
    if not substitution.substitute_units.is_finite():
        yield "substitute_units must be a finite number"
    yield _dates_problem(substitution.effective_from, substitution.effective_to)


def _location_problems(location: Location) -> Iterable[str | None]:
    for item_id in _duplicates(p.item_id for p in location.par_levels):
        yield f"item {item_id} has more than one par level"


_OWN_RULES = {
    "item": _item_problems,
    "supplier": _supplier_problems,
    "contract": _contract_problems,
    "substitution": _substitution_problems,
    "location": _location_problems,
    "cost-centre": lambda _: (),
}


def record_problems(record: Any) -> list[str]:
    """What is wrong with the record on its own, whatever else the item master holds."""
    return [p for p in _OWN_RULES[kind_of(record).name](record) if p]


# -- rules against what the item master already holds ------------------------------------------


class Held(Protocol):
    """What the item master holds, as the rules need to see it."""

    def item(self, item_id: str) -> Item | None: ...
    def supplier(self, supplier_id: str) -> Supplier | None: ...
    def contract(self, contract_number: str) -> Contract | None: ...
    def cost_centre(self, cost_centre_id: str) -> CostCentre | None: ...
    def contracts_for(self, item_id: str) -> list[Contract]: ...
    def code_owner(self, code: str) -> str | None: ...
    def part_owner(self, supplier_id: str, part_number: str) -> str | None: ...


@dataclass
class Review:
    problems: list[str]
    # Accepted, but worth a person's look: a reference to a record not known yet, say.
    notes: list[str]


def _item_review(item: Item, held: Held, review: Review) -> None:
    for code in item_codes(item):
        owner = held.code_owner(code)
        if owner is not None and owner != item.item_id:
            label = code.replace("gtin:", "GTIN ").replace("udi:", "UDI-DI ")
            review.problems.append(f"{label} already belongs to item {owner}")
    for part in item.supplier_parts:
        owner = held.part_owner(part.supplier_id, part.part_number)
        if owner is not None and owner != item.item_id:
            review.problems.append(
                f"supplier part {part.supplier_id}/{part.part_number} already belongs to item "
                f"{owner}"
            )
        if held.supplier(part.supplier_id) is None:
            review.notes.append(f"supplier {part.supplier_id} is not known yet")
    for contract in held.contracts_for(item.item_id):
        for price in contract.prices:
            if price.item_id == item.item_id and _unit_text(item, price.uom):
                review.notes.append(
                    f"contract {contract.contract_number} prices it per {price.uom}, "
                    "a unit it no longer has"
                )


def _contract_review(contract: Contract, held: Held, review: Review) -> None:
    if held.supplier(contract.supplier_id) is None:
        review.notes.append(f"supplier {contract.supplier_id} is not known yet")
    for price in contract.prices:
        item = held.item(price.item_id)
        if item is None:
            review.notes.append(
                f"item {price.item_id} is not known yet; its unit {price.uom} is unchecked"
            )
        elif problem := _unit_text(item, price.uom):
            review.problems.append(f"price of {price.item_id}: {problem}")


def _substitution_review(substitution: Substitution, held: Held, review: Review) -> None:
    for item_id in (substitution.item_id, substitution.substitute_item_id):
        if held.item(item_id) is None:
            review.notes.append(f"item {item_id} is not known yet")
    contract = held.contract(substitution.contract_number)
    if contract is None:
        review.notes.append(f"contract {substitution.contract_number} is not known yet")
    elif not any(p.item_id == substitution.substitute_item_id for p in contract.prices):
        review.notes.append(
            f"contract {substitution.contract_number} has no price for the substitute "
            f"{substitution.substitute_item_id}"
        )


def _location_review(location: Location, held: Held, review: Review) -> None:
    if location.cost_centre_id and held.cost_centre(location.cost_centre_id) is None:
        review.notes.append(f"cost centre {location.cost_centre_id} is not known yet")
    for par in location.par_levels:
        if held.item(par.item_id) is None:
            review.notes.append(f"item {par.item_id} (par level) is not known yet")


_HELD_RULES = {
    "item": _item_review,
    "contract": _contract_review,
    "substitution": _substitution_review,
    "location": _location_review,
}


def review(record: Any, held: Held) -> Review:
    """Every problem that rejects the record, and every note to keep with it."""
    result = Review(record_problems(record), [])
    rule = _HELD_RULES.get(kind_of(record).name)
    if rule:
        rule(record, held, result)
    return result


def check(record: Any, held: Held) -> list[str]:
    """The notes of an acceptable record; Rejected, naming every problem, otherwise."""
    result = review(record, held)
    if result.problems:
        kind = kind_of(record)
        raise Rejected(f"{kind.name} {identity_of(record)}: " + "; ".join(result.problems))
    return result.notes


# -- the replica other systems read (a JetStream KV bucket) ------------------------------------

# KV keys allow letters, digits, '-', '_', '/', '=' and '.' (a token separator). An id keeps its
# own characters where it can; any other byte (and '=' and '.') becomes '=' and two hex digits.
_KEY_SAFE = re.compile(r"[A-Za-z0-9_/-]")


def bucket_name(site: str) -> str:
    return items_bucket(site)  # one name, so the generated NATS permissions match it


def key_token(code: str) -> str:
    return "".join(
        c if _KEY_SAFE.match(c) else "".join(f"={b:02X}" for b in c.encode()) for c in code
    )


def record_key(kind: str, identity: str) -> str:
    return f"{kind}.{key_token(identity)}"


@dataclass(frozen=True)
class KvWrite:
    key: str
    op: str  # put | delete
    kind: str
    record_id: str
    version: int
    value: bytes | None


def _code_key(code: str) -> str:
    prefix, _, value = code.partition(":")
    return f"{prefix}.{key_token(value)}"


def replica_writes(event: Any, previous: Any | None) -> list[KvWrite]:
    """The KV entries that carry an accepted event; an item's codes it no longer has are
    deleted, so a scanned GTIN never finds an item that gave it up."""
    kind = kind_of(event)
    identity = identity_of(event)
    value = _encoder.encode(event)

    def write(key: str, op: str = "put") -> KvWrite:
        return KvWrite(key, op, kind.name, identity, event.version, value if op == "put" else None)

    writes = [write(record_key(kind.name, identity))]
    if kind.name == "item":
        codes = item_codes(event)
        writes += [write(_code_key(code)) for code in sorted(codes)]
        dropped = set(item_codes(previous)) - set(codes) if previous else set()
        writes += [write(_code_key(code), "delete") for code in sorted(dropped)]
    return writes


def supersedes(write: KvWrite, held_value: bytes | None) -> bool:
    """Whether the KV write may replace what the bucket holds: never an older (or the same)
    version of the same record over a newer one."""
    if held_value is None:
        return write.op == "put"
    try:
        held = msgspec.json.decode(held_value)
        same_record = held.get(KINDS[write.kind].identity) == write.record_id
        held_version = int(held.get("version", 0))
    except (msgspec.DecodeError, AttributeError, TypeError, ValueError):
        return True  # something no version of this service wrote: ours wins
    if not same_record:
        # A code another item held, given up in an earlier committed change: a put takes it,
        # a delete of this item's code leaves the other item's entry alone.
        return write.op == "put"
    return write.version > held_version
