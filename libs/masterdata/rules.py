"""Pure master-data rules. Every service that prices, converts or substitutes calls these, so the
same question always gets the same answer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from sinew.contracts.common import Quantity
from sinew.contracts.items import Contract, Item, Substitution

UNIT_PRICE_PLACES = Decimal("0.0001")


class UnknownUnit(ValueError):
    """The item has no such unit of measure: neither its base unit nor one of its packs."""


def base_units_per(item: Item, uom: str) -> Decimal:
    if uom == item.base_uom:
        return Decimal(1)
    for pack in item.packs:
        if pack.uom == uom:
            return pack.base_units
    known = ", ".join([item.base_uom, *(f"{p.uom}={p.base_units}" for p in item.packs)])
    raise UnknownUnit(f"item {item.item_id} has no unit of measure {uom} (it has {known})")


def to_base(item: Item, quantity: Quantity) -> Decimal:
    """The quantity in the item's base unit of measure."""
    return quantity.value * base_units_per(item, quantity.uom)


def convert(item: Item, quantity: Quantity, uom: str) -> Decimal:
    return to_base(item, quantity) / base_units_per(item, uom)


def in_force(effective_from: date | None, effective_to: date | None, on: date) -> bool:
    """Both ends inclusive; a missing end is open."""
    return (effective_from is None or effective_from <= on) and (
        effective_to is None or on <= effective_to
    )


@dataclass(frozen=True)
class PriceQuote:
    contract_number: str
    supplier_id: str
    item_id: str
    uom: str  # the unit the caller asked about
    unit_price: Decimal  # per that unit
    currency: str
    price_uom: str  # the unit the contract states its price in
    contract_unit_price: Decimal  # per price_uom, after quantity tiers
    tier_min_quantity: Decimal | None  # the tier that applied, if any


def contract_price(
    item: Item, contracts: Iterable[Contract], supplier_id: str, on: date, quantity: Quantity
) -> PriceQuote | None:
    """The contract price in force for this item from this supplier on this date, for this
    quantity, per the quantity's unit of measure. None when no contract covers it.

    When several contracts would apply, the lowest unit price wins (the hospital pays the best
    price it is entitled to); ties go to the latest effective date, then the contract number."""
    quotes = []
    for contract in contracts:
        if not (
            contract.active
            and contract.supplier_id == supplier_id
            and in_force(contract.effective_from, contract.effective_to, on)
        ):
            continue
        for price in contract.prices:
            if price.item_id != item.item_id:
                continue
            in_price_units = convert(item, quantity, price.uom)
            tiers = [t for t in price.tiers if t.min_quantity <= in_price_units]
            tier = max(tiers, key=lambda t: t.min_quantity, default=None)
            per_price_uom = tier.unit_price if tier else price.unit_price
            per_unit = (
                per_price_uom * base_units_per(item, quantity.uom) / base_units_per(item, price.uom)
            )
            quotes.append(
                (
                    per_unit,
                    -contract.effective_from.toordinal(),
                    contract.contract_number,
                    PriceQuote(
                        contract_number=contract.contract_number,
                        supplier_id=supplier_id,
                        item_id=item.item_id,
                        uom=quantity.uom,
                        unit_price=per_unit.quantize(UNIT_PRICE_PLACES, ROUND_HALF_EVEN),
                        currency=contract.currency,
                        price_uom=price.uom,
                        contract_unit_price=per_price_uom,
                        tier_min_quantity=tier.min_quantity if tier else None,
                    ),
                )
            )
    return min(quotes, key=lambda q: q[:3])[3] if quotes else None


def approved_substitution(
    substitutions: Iterable[Substitution], item_id: str, substitute_item_id: str, on: date
) -> Substitution | None:
    """The approval under which `substitute_item_id` may stand in for `item_id` on that date."""
    for substitution in substitutions:
        if (
            substitution.active
            and substitution.item_id == item_id
            and substitution.substitute_item_id == substitute_item_id
            and in_force(substitution.effective_from, substitution.effective_to, on)
        ):
            return substitution
    return None
