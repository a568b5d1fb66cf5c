"""Procurement's pure rules: the purchase order's life, what an order line costs, how much is
ordered and received, and what a supplier's acknowledgement changes. Plain data in, plain data
out; no database, no NATS."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Literal

import msgspec

from sinew.contracts.common import Quantity
from sinew.contracts.items import Item
from sinew.contracts.procurement import AcknowledgementLine, PurchaseOrder, PurchaseOrderLine
from sinew.masterdata.rules import PriceQuote, base_units_per, to_base

CENT = Decimal("0.01")

# -- the purchase order's life ------------------------------------------------------------------

State = Literal[
    "draft",
    "approved",
    "sent",
    "acknowledged",
    "partially_received",
    "received",
    "closed",
    "cancelled",
]
FINISHED: frozenset[str] = frozenset({"closed", "cancelled"})

Action = Literal[
    "approve",
    "send",
    "acknowledge",
    "buyer_change",
    "supplier_change",
    "receive_part",
    "receive_all",
    "close_received",
    "close_short",
    "close_bill_only",
    "cancel",
]

_WAITING_FOR_GOODS = ("approved", "sent", "acknowledged", "partially_received")
_MOVES: dict[str, dict[str, str]] = {
    "approve": {"draft": "approved"},
    "send": {"approved": "sent"},
    # A late acknowledgement, after goods arrived, is recorded but moves nothing back.
    "acknowledge": {
        "sent": "acknowledged",
        "acknowledged": "acknowledged",
        "partially_received": "partially_received",
        "received": "received",
    },
    # The buyer changes only what the supplier has not seen yet.
    "buyer_change": {"draft": "draft", "approved": "approved"},
    "supplier_change": {
        "sent": "sent",
        "acknowledged": "acknowledged",
        "partially_received": "partially_received",
    },
    "receive_part": dict.fromkeys(_WAITING_FOR_GOODS, "partially_received"),
    "receive_all": {**dict.fromkeys(_WAITING_FOR_GOODS, "received"), "received": "received"},
    "close_received": {"received": "closed"},
    "close_short": {"partially_received": "closed"},
    "close_bill_only": {"approved": "closed", "sent": "closed", "acknowledged": "closed"},
    "cancel": {"draft": "cancelled", "approved": "cancelled", "sent": "cancelled",
               "acknowledged": "cancelled"},
}  # fmt: skip

_WHY_NOT: dict[tuple[str, str], str] = {
    ("cancel", "partially_received"): "goods were already received against it; close it short",
    ("cancel", "received"): "every line was received; it can only be closed",
    ("close_short", "received"): "every line was received; close it as fully received",
    ("close_received", "partially_received"): "lines are still open; close it short instead",
    ("buyer_change", "sent"): "the supplier already has it",
    ("buyer_change", "acknowledged"): "the supplier already has it",
}


class IllegalTransition(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def transition(state: str, action: Action, *, bill_only: bool = False) -> str:
    """The state a purchase order moves to, or IllegalTransition saying why it cannot."""
    if bill_only and action in ("receive_part", "receive_all", "close_received", "close_short"):
        raise IllegalTransition(
            "a bill-only purchase order needs no receipt: the usage stands in for it"
        )
    if action == "close_bill_only" and not bill_only:
        raise IllegalTransition("only a bill-only purchase order closes on its invoice alone")
    moves = _MOVES[action]
    if state not in moves:
        why = _WHY_NOT.get((action, state), f"{_verb(action)} is not possible once it is {state}")
        raise IllegalTransition(f"cannot {_verb(action)} a purchase order that is {state}: {why}")
    return moves[state]


def _verb(action: str) -> str:
    return {
        "receive_part": "receive against",
        "receive_all": "receive against",
        "close_received": "close",
        "close_short": "short-close",
        "close_bill_only": "close",
        "buyer_change": "change",
        "supplier_change": "change",
    }.get(action, action)


def legal_actions(state: str, *, bill_only: bool = False) -> list[str]:
    allowed = []
    for action in _MOVES:
        try:
            transition(state, action, bill_only=bill_only)  # type: ignore[arg-type]
        except IllegalTransition:
            continue
        allowed.append(action)
    return allowed


# -- receipts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineProgress:
    ordered_base: Decimal
    received_base: Decimal


def receipt_action(lines: Iterable[LineProgress]) -> Action | None:
    """After a receipt: is everything ordered in (each line compared in base units)?"""
    lines = list(lines)
    if not any(line.received_base > 0 for line in lines):
        return None
    if all(line.received_base >= line.ordered_base for line in lines):
        return "receive_all"
    return "receive_part"


# -- quantities and prices -----------------------------------------------------------------------


def order_quantity(item: Item, base_quantity: Decimal, uom: str) -> Quantity:
    """What to order in a unit the supplier sells: whole packs, rounded up, so a shortfall of 3
    eaches of an item sold in boxes of 10 becomes 1 box."""
    packs = (base_quantity / base_units_per(item, uom)).to_integral_value(ROUND_CEILING)
    return Quantity(max(packs, Decimal(1)), uom)


def per_base_unit(item: Item, quote: PriceQuote) -> Decimal:
    return quote.unit_price / base_units_per(item, quote.uom)


def cheapest(item: Item, quotes: Iterable[PriceQuote]) -> PriceQuote | None:
    """Among suppliers with a contract in force, the one that costs least per base unit; ties go
    to the supplier id, so the same data always picks the same supplier."""
    return min(quotes, key=lambda q: (per_base_unit(item, q), q.supplier_id), default=None)


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_EVEN)


def unit_price(value: Decimal) -> Decimal:
    """Cents when nothing finer is there (1200.00, not 1200.0000); contract tiers may be finer."""
    return money(value) if value == money(value) else value.normalize()


def extended(price: Decimal, quantity: Quantity) -> Decimal:
    return money(price * quantity.value)


def priced_line(
    line_number: int,
    item: Item,
    quantity: Quantity,
    quote: PriceQuote | None,
    fallback_price: Decimal | None,
    supplier_id: str,
    **extra,
) -> PurchaseOrderLine:
    """A PO line at the contract price in force, or off contract at the price a person gave."""
    if quote is not None:
        price, contract, off_contract = unit_price(quote.unit_price), quote.contract_number, False
    elif fallback_price is not None:
        price, contract, off_contract = unit_price(fallback_price), None, True
    else:
        raise ValueError(f"line {line_number}: no contract price and no price given")
    part = next((p.part_number for p in item.supplier_parts if p.supplier_id == supplier_id), None)
    return PurchaseOrderLine(
        line_number=line_number,
        item_id=item.item_id,
        quantity=quantity,
        unit_price=price,
        extended_amount=extended(price, quantity),
        description=item.description,
        supplier_part=part,
        contract_number=contract,
        off_contract=off_contract,
        **extra,
    )


def ordered_base(item: Item, line: PurchaseOrderLine) -> Decimal:
    return to_base(item, line.quantity)


def total(lines: Iterable[PurchaseOrderLine]) -> Decimal:
    return money(sum((line.extended_amount for line in lines), Decimal(0)))


def revised(po: PurchaseOrder, lines: tuple[PurchaseOrderLine, ...]) -> PurchaseOrder:
    return msgspec.structs.replace(po, lines=lines, total=total(lines), revision=po.revision + 1)


# -- the supplier's acknowledgement --------------------------------------------------------------


@dataclass(frozen=True)
class SupplierAnswer:
    """What an acknowledgement means for the order: the lines it changes, and what the
    requesting location should see (backorders, substitutes, prices the PO did not take)."""

    lines: tuple[PurchaseOrderLine, ...]
    changed: tuple[str, ...]  # why the PO took a new revision, one phrase per line changed
    price_not_taken: dict[int, Decimal]


def answer(
    po: PurchaseOrder,
    acknowledged: Iterable[AcknowledgementLine],
    quantity_in_line_uom: Callable[[PurchaseOrderLine, Quantity], Decimal],
) -> SupplierAnswer:
    """Quantity changes and rejected lines change the order. A price change changes it only on
    an off-contract line: the contract price in force is the hospital's, and a supplier does not
    change it by acknowledging; the difference is kept for the location and for matching."""
    by_number = {line.line_number: line for line in po.lines}
    lines = dict(by_number)
    changed: list[str] = []
    price_not_taken: dict[int, Decimal] = {}
    for ack in acknowledged:
        line = by_number.get(ack.line_number)
        if line is None:
            raise KeyError(f"purchase order {po.po_number} has no line {ack.line_number}")
        quantity = line.quantity
        price = line.unit_price
        if ack.status == "rejected":
            quantity = Quantity(Decimal(0), line.quantity.uom)
        elif ack.status == "quantity_changed" and ack.quantity is not None:
            quantity = Quantity(quantity_in_line_uom(line, ack.quantity), line.quantity.uom)
        if ack.unit_price is not None and ack.unit_price != line.unit_price:
            if line.off_contract:
                price = unit_price(ack.unit_price)
            else:
                price_not_taken[line.line_number] = ack.unit_price
        if (quantity, price) != (line.quantity, line.unit_price):
            lines[line.line_number] = msgspec.structs.replace(
                line, quantity=quantity, unit_price=price, extended_amount=extended(price, quantity)
            )
            changed.append(_what_changed(line, quantity, price))
    return SupplierAnswer(tuple(lines.values()), tuple(changed), price_not_taken)


def _what_changed(line: PurchaseOrderLine, quantity: Quantity, price: Decimal) -> str:
    parts = []
    if quantity != line.quantity:
        parts.append(
            f"quantity {line.quantity.value} -> {quantity.value} {quantity.uom}"
            if quantity.value
            else "rejected by the supplier"
        )
    if price != line.unit_price:
        parts.append(f"unit price {line.unit_price} -> {price}")
    return f"line {line.line_number} ({line.item_id}): {', '.join(parts)}"
