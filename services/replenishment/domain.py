"""The replenishment rules, as plain functions of plain data.

Stock is kept per location, item and lot in the item's base unit. A location's par level and
reorder point for an item come from the item master. When the stock of an item at a location
(over every lot) is at or below its reorder point and under par, one signal is open for it,
asking for what brings it back to par; the signal follows the stock while open and closes once
the stock is back above the reorder point.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from sinew.contracts.items import ParLevel

# Why a signal closed, besides a person cancelling it (the contract's "cancelled").
CloseReason = Literal["stock_received", "stock_adjusted", "par_changed"]

# The lot key of stock that carries no lot: SQLite keys cannot hold NULL.
NO_LOT = ""

ZERO = Decimal(0)


@dataclass(frozen=True)
class OpenSignal:
    signal_id: str
    quantity: Decimal


@dataclass(frozen=True)
class Raise:
    quantity: Decimal


@dataclass(frozen=True)
class Update:
    quantity: Decimal


@dataclass(frozen=True)
class Close:
    reason: CloseReason


Decision = Raise | Update | Close | None


def shortfall(on_hand: Decimal, par: ParLevel) -> Decimal:
    """What brings the stock back to par."""
    return par.par_level - on_hand


def needs_replenishment(on_hand: Decimal, par: ParLevel | None) -> bool:
    # A par level equal to its reorder point, met exactly, has nothing to order.
    return par is not None and on_hand <= par.reorder_point and shortfall(on_hand, par) > 0


def decide(
    on_hand: Decimal, par: ParLevel | None, signal: OpenSignal | None, cause: CloseReason
) -> Decision:
    """What to do with the signal of one location and item after its stock or par level changed.

    `cause` is why the stock or the par level moved; it becomes the reason a signal closes,
    except that a par level taken away always closes as "par_changed".

    While a signal is open its quantity is par minus on-hand, so it grows as consumption goes
    on and shrinks when part of the order arrives; it closes only once the stock is back above
    the reorder point. However many usages arrive together, at most one signal is open."""
    if needs_replenishment(on_hand, par):
        assert par is not None
        wanted = shortfall(on_hand, par)
        if signal is None:
            return Raise(wanted)
        return Update(wanted) if wanted != signal.quantity else None
    if signal is None:
        return None
    return Close("par_changed" if par is None else cause)


def counted_levels(
    held: Mapping[str, Decimal], counted: Iterable[tuple[str | None, Decimal]]
) -> dict[str, Decimal]:
    """What one item's lots at a location hold after a count: lot -> quantity for every lot the
    count sets. Lines naming the same lot add up (one lot on two shelves). A line without a lot
    covers every lot of the item the count does not name: it becomes the stock without a lot and
    the lots nobody counted are set to nothing, since the counter found nothing else. Without
    such a line a count sets only the lots it names."""
    named: dict[str, Decimal] = {}
    for lot, quantity in counted:
        key = lot or NO_LOT
        named[key] = named.get(key, ZERO) + quantity
    if NO_LOT not in named:
        return named
    return {**dict.fromkeys(held, ZERO), **named}


def is_discrepancy(on_hand: Decimal) -> bool:
    """Negative stock: used before it was received, or a receipt missing. Shown, never hidden."""
    return on_hand < 0


def signal_id(site: str, location_id: str, item_id: str, ordinal: int) -> str:
    """The n-th signal of a location and item: the same on a retry or a rebuild."""
    key = f"sinew:{site}:replenishment:signal:{location_id}:{item_id}:{ordinal}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def adjustment_id(site: str, source: str, reference: str) -> str:
    """Sinew's id of what one warehouse count or adjustment did to the stock."""
    key = f"sinew:{site}:replenishment:{source}:{reference}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def as_text(value: Decimal) -> str:
    """A decimal as stored and shown: no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text
