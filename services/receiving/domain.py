"""The receipt rules: what arrived at the dock, against what was ordered, and what is received.

Plain functions of plain data. `evaluate` takes one pending receipt (a header and the lines that
arrived), the purchase order as this service knows it, the item master and what was already
received, and answers with the lines received and the problems a person must see. Nothing here
reads a database or a clock.

Over-receipt: the lines are received up to the ordered quantity and the excess is held as an
OVER_RECEIPT exception. The dock keeps moving, matching and replenishment see what was ordered,
and a person decides about the excess (accept it, or return it to the supplier).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol

import msgspec

from sinew.contracts.common import Quantity
from sinew.contracts.items import Item, Substitution
from sinew.masterdata.barcodes import gtin14
from sinew.masterdata.rules import UnknownUnit, base_units_per, to_base

ExceptionType = Literal[
    "OVER_RECEIPT",
    "UNKNOWN_PO",
    "CLOSED_PO",
    "UNKNOWN_ITEM",
    "EXPIRED_LOT",
    "DUPLICATE_SERIAL",
    "LOT_OR_SERIAL_MISSING",
    "UNREADABLE_BARCODE",
]
Resolution = Literal["accepted", "returned_to_supplier", "corrected", "dismissed"]
Source = Literal["dock_scan", "api", "asn"]

# A person may receive goods in spite of these; the others name something that is not there (a
# PO, an item) and can only be corrected or dismissed.
ACCEPTABLE: frozenset[str] = frozenset(
    {"OVER_RECEIPT", "CLOSED_PO", "EXPIRED_LOT", "DUPLICATE_SERIAL", "LOT_OR_SERIAL_MISSING"}
)


class Arrival(msgspec.Struct, frozen=True, kw_only=True):
    """One line of goods as it arrived, before the rules decide what is received. A dock scan
    names the item by its code and may leave the quantity to the pack the code identifies."""

    po_line_number: int | None = None
    item_id: str | None = None
    gtin: str | None = None
    udi_di: str | None = None
    # ASNs often name only the supplier's own part number.
    supplier_id: str | None = None
    supplier_part: str | None = None
    quantity: Quantity | None = None  # None: one of the pack the code identifies
    lot: str | None = None
    serial: str | None = None
    expiry: date | None = None


class ReceiptHeader(msgspec.Struct, frozen=True, kw_only=True):
    receipt_id: str
    po_number: str | None
    location_id: str | None
    source: Source
    received_by: str
    received_at: datetime
    asn_number: str | None = None
    scan_id: str | None = None
    barcode: str | None = None


class PendingReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """What is kept with an exception, so the receipt can be evaluated again when the missing PO
    or item arrives, or when a person accepts or corrects it. `waived` lists the exception types
    a person already accepted for these lines."""

    header: ReceiptHeader
    arrivals: tuple[Arrival, ...]
    waived: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrderLine:
    line_number: int
    item_id: str
    quantity: Quantity
    # The supplier acknowledged shipping this item instead, under an approved substitution.
    substitute_item_id: str | None = None


@dataclass(frozen=True)
class Order:
    po_number: str
    revision: int
    supplier_id: str
    ship_to_location_id: str | None
    status: Literal["open", "cancelled", "closed"]
    lines: tuple[OrderLine, ...]

    def line(self, line_number: int) -> OrderLine | None:
        return next((line for line in self.lines if line.line_number == line_number), None)


class ItemMaster(Protocol):
    def item(self, item_id: str) -> Item | None: ...

    def item_by_code(
        self, *, gtin: str | None = None, udi_di: str | None = None
    ) -> tuple[Item, str | None] | None: ...

    def item_by_supplier_part(self, supplier_id: str, part_number: str) -> Item | None: ...

    def substitution(
        self, item_id: str, substitute_item_id: str, on: date
    ) -> Substitution | None: ...


class ReceiptHistory(Protocol):
    def received(self, po_number: str, line_number: int) -> Decimal:
        """Accepted so far on the line, in base units of the item ordered."""
        ...

    def serial_received(self, item_id: str, serial: str) -> bool: ...


@dataclass(frozen=True)
class ReceivedLine:
    po_line_number: int
    item_id: str
    quantity: Quantity
    base_quantity: Decimal  # base units of the item received
    base_uom: str
    counted: Decimal  # base units of the item ordered (differs for a substitute)
    lot: str | None
    serial: str | None
    expiry: date | None
    gtin: str | None


@dataclass(frozen=True)
class Problem:
    type: ExceptionType
    explanation: str
    held: PendingReceipt  # what a resolution evaluates again
    po_line_number: int | None = None
    item_id: str | None = None
    quantity: Quantity | None = None
    lot: str | None = None
    serial: str | None = None
    expiry: date | None = None
    # What arriving would let the receipt go through by itself: "po:PO-1", "item:X",
    # "gtin:<14 digits>", "udi:<device identifier>".
    waiting_for: str | None = None


@dataclass
class Evaluation:
    location_id: str | None = None
    supplier_id: str | None = None
    received: list[ReceivedLine] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def plain(value: Decimal) -> str:
    """A decimal as people write it: 20, not 2E+1 or 20.000."""
    return format(value.normalize(), "f")


def show(quantity: Quantity) -> str:
    return f"{plain(quantity.value)} {quantity.uom}"


@dataclass(frozen=True)
class Identified:
    item: Item
    quantity: Quantity
    base_quantity: Decimal


def code_key(arrival: Arrival) -> str | None:
    if arrival.item_id:
        return f"item:{arrival.item_id}"
    if arrival.gtin:
        return f"gtin:{gtin14(arrival.gtin)}"
    if arrival.udi_di:
        return f"udi:{arrival.udi_di}"
    if arrival.supplier_part:
        return f"part:{arrival.supplier_id}:{arrival.supplier_part}"
    return None


def identify(arrival: Arrival, items: ItemMaster) -> Identified | str:
    """The item, quantity and base quantity of an arrival, or why it cannot be known."""
    pack_uom = None
    if arrival.item_id:
        item = items.item(arrival.item_id)
        if item is None:
            return f"item {arrival.item_id} is not in the item master"
    elif arrival.gtin or arrival.udi_di:
        found = items.item_by_code(gtin=arrival.gtin, udi_di=arrival.udi_di)
        if found is None:
            code = f"GTIN {arrival.gtin}" if arrival.gtin else f"UDI-DI {arrival.udi_di}"
            return f"no item in the item master has {code}"
        item, pack_uom = found
    elif arrival.supplier_part and arrival.supplier_id:
        item = items.item_by_supplier_part(arrival.supplier_id, arrival.supplier_part)
        if item is None:
            return (
                f"no item in the item master has part {arrival.supplier_part} of supplier "
                f"{arrival.supplier_id}"
            )
    else:
        return "the line names no item, GTIN, UDI or supplier part"
    quantity = arrival.quantity or Quantity(Decimal(1), pack_uom or item.base_uom)
    try:
        base = to_base(item, quantity)
    except UnknownUnit as error:
        return str(error)
    return Identified(item, quantity, base)


class Tally:
    """What was received before, plus what this receipt received so far: two lines of one
    receipt count against the same PO line and the same serials."""

    def __init__(self, history: ReceiptHistory) -> None:
        self.history = history
        self.added: dict[tuple[str, int], Decimal] = {}
        self.serials: set[tuple[str, str]] = set()

    def received(self, po_number: str, line_number: int) -> Decimal:
        extra = self.added.get((po_number, line_number), Decimal(0))
        return self.history.received(po_number, line_number) + extra

    def serial_seen(self, item_id: str, serial: str) -> bool:
        return (item_id, serial) in self.serials or self.history.serial_received(item_id, serial)

    def add(self, po_number: str, line: ReceivedLine) -> None:
        key = (po_number, line.po_line_number)
        self.added[key] = self.added.get(key, Decimal(0)) + line.counted
        if line.serial:
            self.serials.add((line.item_id, line.serial))


def ordered_base(line: OrderLine, items: ItemMaster) -> Decimal | None:
    item = items.item(line.item_id)
    if item is None:
        return None
    try:
        return to_base(item, line.quantity)
    except UnknownUnit:
        return None


def evaluate(
    pending: PendingReceipt, order: Order | None, items: ItemMaster, history: ReceiptHistory
) -> Evaluation:
    header = pending.header
    waived = set(pending.waived)
    if order is None:
        return _without_order(pending, items)
    outcome = Evaluation(
        location_id=header.location_id or order.ship_to_location_id, supplier_id=order.supplier_id
    )
    if order.status != "open" and "CLOSED_PO" not in waived:
        outcome.problems.append(
            Problem(
                "CLOSED_PO",
                f"purchase order {order.po_number} is {order.status}: no more receipts are "
                "expected against it",
                pending,
                **_whole(pending),
            )
        )
        return outcome
    tally = Tally(history)
    for arrival in pending.arrivals:
        result = _evaluate_line(pending, arrival, order, items, tally)
        if isinstance(result, Problem):
            outcome.problems.append(result)
            continue
        received, excess = result
        if received is not None:
            tally.add(order.po_number, received)
            outcome.received.append(received)
        if excess is not None:
            outcome.problems.append(excess)
    return outcome


def _whole(pending: PendingReceipt) -> dict:
    """What an exception about a whole receipt says of its line, when it has only one."""
    if len(pending.arrivals) != 1:
        return {}
    (arrival,) = pending.arrivals
    return dict(
        po_line_number=arrival.po_line_number,
        item_id=arrival.item_id,
        quantity=arrival.quantity,
        lot=arrival.lot,
        serial=arrival.serial,
        expiry=arrival.expiry,
    )


def _without_order(pending: PendingReceipt, items: ItemMaster) -> Evaluation:
    header = pending.header
    if header.po_number:
        return Evaluation(
            location_id=header.location_id,
            problems=[
                Problem(
                    "UNKNOWN_PO",
                    f"purchase order {header.po_number} is not known here (yet); the receipt is "
                    "held and goes through by itself when the PO arrives",
                    pending,
                    waiting_for=f"po:{header.po_number}",
                    **_whole(pending),
                )
            ],
        )
    # Nothing named a PO and nothing found one: say first whether the item itself is unknown,
    # since knowing it is what would let an ASN or an open PO line be found.
    outcome = Evaluation(location_id=header.location_id)
    for arrival in pending.arrivals:
        identified = identify(arrival, items)
        if isinstance(identified, str):
            outcome.problems.append(_unknown_item(pending, arrival, identified))
            continue
        # An ASN listing the serial (or lot) that arrives later says which PO it was.
        waiting_for = (
            f"serial:{arrival.serial}"
            if arrival.serial
            else f"lot:{arrival.lot}"
            if arrival.lot
            else None
        )
        outcome.problems.append(
            Problem(
                "UNKNOWN_PO",
                f"no PO was named, and no ASN or open PO line awaits {identified.item.item_id}"
                + (f" serial {arrival.serial}" if arrival.serial else "")
                + (f" lot {arrival.lot}" if arrival.lot else ""),
                _held(pending, arrival),
                item_id=identified.item.item_id,
                quantity=identified.quantity,
                lot=arrival.lot,
                serial=arrival.serial,
                expiry=arrival.expiry,
                waiting_for=waiting_for,
            )
        )
    return outcome


def _held(pending: PendingReceipt, arrival: Arrival, *extra_waived: str) -> PendingReceipt:
    return PendingReceipt(
        header=pending.header,
        arrivals=(arrival,),
        waived=tuple(sorted({*pending.waived, *extra_waived})),
    )


def _unknown_item(pending: PendingReceipt, arrival: Arrival, why: str) -> Problem:
    return Problem(
        "UNKNOWN_ITEM",
        why,
        _held(pending, arrival),
        po_line_number=arrival.po_line_number,
        item_id=arrival.item_id,
        quantity=arrival.quantity,
        lot=arrival.lot,
        serial=arrival.serial,
        expiry=arrival.expiry,
        waiting_for=code_key(arrival),
    )


def _substitute_units(line: OrderLine, item_id: str, items: ItemMaster, on: date) -> Decimal | None:
    """Base units of `item_id` that stand for one base unit of the line's item, or None when it
    may not stand in for it."""
    if item_id == line.item_id:
        return Decimal(1)
    substitution = items.substitution(line.item_id, item_id, on)
    if substitution is not None:
        return substitution.substitute_units
    if line.substitute_item_id == item_id:
        return Decimal(1)
    return None


def _choose_line(
    order: Order, item_id: str, items: ItemMaster, tally: Tally, on: date
) -> OrderLine | None:
    """The first line for this item (or one it may stand in for) with something left to
    receive; else the last such line, so an over-receipt is raised against it."""
    candidates = [
        line for line in order.lines if _substitute_units(line, item_id, items, on) is not None
    ]
    for line in candidates:
        ordered = ordered_base(line, items)
        if ordered is None or tally.received(order.po_number, line.line_number) < ordered:
            return line
    return candidates[-1] if candidates else None


def _evaluate_line(
    pending: PendingReceipt,
    arrival: Arrival,
    order: Order,
    items: ItemMaster,
    tally: Tally,
) -> Problem | tuple[ReceivedLine | None, Problem | None]:
    waived = set(pending.waived)
    on = pending.header.received_at.date()
    ordered = order.line(arrival.po_line_number) if arrival.po_line_number else None
    if ordered and not (arrival.item_id or arrival.gtin or arrival.udi_di or arrival.supplier_part):
        # A clerk receiving against a PO line need not name the item again: it is the line's.
        arrival = msgspec.structs.replace(arrival, item_id=ordered.item_id)
    identified = identify(arrival, items)
    if isinstance(identified, str):
        return _unknown_item(pending, arrival, identified)
    item, quantity, base = identified.item, identified.quantity, identified.base_quantity
    facts = dict(
        item_id=item.item_id,
        quantity=quantity,
        lot=arrival.lot,
        serial=arrival.serial,
        expiry=arrival.expiry,
    )
    if arrival.po_line_number is not None:
        line = order.line(arrival.po_line_number)
        if line is None:
            return Problem(
                "UNKNOWN_PO",
                f"purchase order {order.po_number} has no line {arrival.po_line_number}",
                _held(pending, arrival),
                po_line_number=arrival.po_line_number,
                waiting_for=f"po:{order.po_number}",
                **facts,
            )
    else:
        line = _choose_line(order, item.item_id, items, tally, on)
        if line is None:
            return Problem(
                "UNKNOWN_ITEM",
                f"{item.item_id} is not ordered on purchase order {order.po_number}, nor an "
                "approved substitute for an item that is",
                _held(pending, arrival),
                **facts,
            )
    resolved = msgspec.structs.replace(
        arrival, po_line_number=line.line_number, item_id=item.item_id, quantity=quantity
    )
    facts["po_line_number"] = line.line_number
    units = _substitute_units(line, item.item_id, items, on)
    if units is None:
        return Problem(
            "UNKNOWN_ITEM",
            f"line {line.line_number} of {order.po_number} orders {line.item_id}; "
            f"{item.item_id} is not an approved substitute for it",
            _held(pending, resolved),
            **facts,
        )
    ordered = ordered_base(line, items)
    if ordered is None:
        return Problem(
            "UNKNOWN_ITEM",
            f"the item ordered on line {line.line_number}, {line.item_id}, is not in the item "
            f"master in unit {line.quantity.uom}",
            _held(pending, resolved),
            waiting_for=f"item:{line.item_id}",
            **facts,
        )

    def problem(type_: ExceptionType, explanation: str) -> Problem:
        return Problem(type_, explanation, _held(pending, resolved), **facts)

    missing = [
        name
        for name, needed, given in (
            ("lot", item.lot_controlled, arrival.lot),
            ("serial", item.serial_controlled, arrival.serial),
        )
        if needed and not given
    ]
    if "LOT_OR_SERIAL_MISSING" not in waived:
        if missing:
            return problem(
                "LOT_OR_SERIAL_MISSING",
                f"{item.item_id} is {' and '.join(missing)} controlled; the "
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing",
            )
        if item.serial_controlled and base != 1:
            return problem(
                "LOT_OR_SERIAL_MISSING",
                f"{item.item_id} is serial controlled: one serial names one unit, and this line "
                f"carries {plain(base)} {item.base_uom} under serial {arrival.serial}",
            )
    if arrival.expiry is not None and arrival.expiry < on and "EXPIRED_LOT" not in waived:
        return problem(
            "EXPIRED_LOT",
            f"{item.item_id} lot {arrival.lot or '-'} expired on {arrival.expiry.isoformat()}, "
            f"before it was received on {on.isoformat()}",
        )
    if (
        arrival.serial
        and tally.serial_seen(item.item_id, arrival.serial)
        and "DUPLICATE_SERIAL" not in waived
    ):
        return problem(
            "DUPLICATE_SERIAL",
            f"{item.item_id} serial {arrival.serial} was already received",
        )

    counted = base / units
    already = tally.received(order.po_number, line.line_number)
    remaining = max(ordered - already, Decimal(0))
    if counted <= remaining or "OVER_RECEIPT" in waived:
        return _received(line, item, quantity, base, counted, arrival), None
    taken = remaining
    excess_base = (counted - taken) * units
    excess_quantity = _in_unit(item, excess_base, quantity.uom)
    ordered_item = items.item(line.item_id)
    base_uom = ordered_item.base_uom if ordered_item else item.base_uom
    excess = Problem(
        "OVER_RECEIPT",
        f"line {line.line_number} of {order.po_number} orders {show(line.quantity)} "
        f"({plain(ordered)} {base_uom}); {plain(already)} {base_uom} already received; "
        f"{show(quantity)} arrived, {show(excess_quantity)} of it beyond the order is held",
        _held(pending, msgspec.structs.replace(resolved, quantity=excess_quantity)),
        **{**facts, "quantity": excess_quantity},
    )
    if taken <= 0:
        return None, excess
    taken_base = taken * units
    return (
        _received(line, item, _in_unit(item, taken_base, quantity.uom), taken_base, taken, arrival),
        excess,
    )


def _in_unit(item: Item, base: Decimal, uom: str) -> Quantity:
    """`base` units in the receipt's unit when they make whole packs, else in base units."""
    per = base_units_per(item, uom)
    if base % per == 0:
        return Quantity(base / per, uom)
    return Quantity(base, item.base_uom)


def _received(
    line: OrderLine,
    item: Item,
    quantity: Quantity,
    base: Decimal,
    counted: Decimal,
    arrival: Arrival,
) -> ReceivedLine:
    return ReceivedLine(
        po_line_number=line.line_number,
        item_id=item.item_id,
        quantity=quantity,
        base_quantity=base,
        base_uom=item.base_uom,
        counted=counted,
        lot=arrival.lot,
        serial=arrival.serial,
        expiry=arrival.expiry,
        gtin=arrival.gtin or item.gtin,
    )


# -- resolutions --------------------------------------------------------------------------------


class Correction(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a person corrects on held lines before they are evaluated again."""

    po_number: str | None = None
    po_line_number: int | None = None
    item_id: str | None = None
    quantity: Quantity | None = None
    lot: str | None = None
    serial: str | None = None
    expiry: date | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__struct_fields__)


def can_resolve(type_: str, resolution: str, correction: Correction | None) -> str | None:
    """Why this resolution does not fit this exception, or None when it does."""
    if resolution == "accepted" and type_ not in ACCEPTABLE:
        return f"a {type_} exception names something that is not there; correct it or dismiss it"
    if resolution == "corrected" and (correction is None or correction.is_empty()):
        return "a correction needs at least one corrected field"
    if resolution != "corrected" and correction is not None and not correction.is_empty():
        return "corrections go with resolution 'corrected'"
    return None


def after_resolution(
    held: PendingReceipt, type_: str, resolution: str, correction: Correction | None
) -> PendingReceipt | None:
    """The receipt to evaluate again once a person resolved an exception; None when nothing
    is to be received (dismissed, or returned to the supplier)."""
    if resolution == "accepted":
        return msgspec.structs.replace(held, waived=tuple(sorted({*held.waived, type_})))
    if resolution != "corrected" or correction is None:
        return None
    header = held.header
    if correction.po_number is not None:
        header = msgspec.structs.replace(header, po_number=correction.po_number)
    changes = {
        name: getattr(correction, name)
        for name in ("po_line_number", "item_id", "quantity", "lot", "serial", "expiry")
        if getattr(correction, name) is not None
    }
    if "item_id" in changes:  # a corrected item replaces whatever code the scan carried
        changes.update(gtin=None, udi_di=None, supplier_part=None)
    arrivals = tuple(msgspec.structs.replace(a, **changes) for a in held.arrivals)
    return msgspec.structs.replace(held, header=header, arrivals=arrivals)


def same_wait(problems: Iterable[Problem], type_: str, waiting_for: str | None) -> bool:
    """Evaluating again changed nothing: still one problem of the same kind, waiting for the
    same thing."""
    problems = list(problems)
    return (
        len(problems) == 1 and problems[0].type == type_ and problems[0].waiting_for == waiting_for
    )
