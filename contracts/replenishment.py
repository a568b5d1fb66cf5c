"""Stock on hand per location and item, warehouse counts and adjustments, replenishment signals.

Quantities here are in the item's base unit of measure.
"""

from typing import Literal

import msgspec

from .catalogue import INGRESS, Channel
from .common import Code, Quantity, SiteCode, Text, UtcTime
from .items import Lot

AdjustmentReason = Literal[
    "cycle_count",
    "damaged",
    "expired",
    "recalled",
    "lost",
    "found",
    "transfer_in",
    "transfer_out",
    "returned_to_supplier",
    "correction",
]


class CountedLine(msgspec.Struct, frozen=True, kw_only=True):
    item_id: Code
    quantity: Quantity  # what is on the shelf, replacing what Sinew thought was there
    lot: Lot | None = None


class StockCount(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="count"):
    """A cycle count at one location from the warehouse system."""

    site: SiteCode
    count_id: Code
    location_id: Code
    lines: tuple[CountedLine, ...]
    counted_by: Text | None = None
    counted_at: UtcTime


class AdjustedLine(msgspec.Struct, frozen=True, kw_only=True):
    item_id: Code
    change: Quantity  # negative takes stock away
    reason: AdjustmentReason
    lot: Lot | None = None


class StockAdjustment(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="kind", tag="adjustment"
):
    """Stock moved in or out of a location outside receipts and usage."""

    site: SiteCode
    adjustment_id: Code
    location_id: Code
    lines: tuple[AdjustedLine, ...]
    adjusted_by: Text | None = None
    note: Text | None = None
    adjusted_at: UtcTime


InventoryReport = StockCount | StockAdjustment


class StockChange(msgspec.Struct, frozen=True, kw_only=True):
    item_id: Code
    before: Quantity
    change: Quantity
    after: Quantity  # may be negative: usage recorded before its receipt is a discrepancy
    reason: AdjustmentReason
    lot: Lot | None = None


class InventoryAdjusted(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    adjustment_id: Code
    location_id: Code
    source: Literal["count", "adjustment"]
    reference: Code  # the warehouse's count or adjustment id
    lines: tuple[StockChange, ...]
    adjusted_by: Text | None = None
    adjusted_at: UtcTime


class ReplenishmentSignalRaised(msgspec.Struct, frozen=True, kw_only=True):
    """Stock at a location fell to its reorder point: order enough to get back to par.
    There is one open signal per location and item, however many usages caused it."""

    site: SiteCode
    signal_id: Code
    location_id: Code
    item_id: Code
    quantity: Quantity
    on_hand: Quantity
    par_level: Quantity
    reorder_point: Quantity
    raised_at: UtcTime


class ReplenishmentSignalUpdated(msgspec.Struct, frozen=True, kw_only=True):
    """Consumption went on while the signal was open; ``quantity`` is the new shortfall to par."""

    site: SiteCode
    signal_id: Code
    location_id: Code
    item_id: Code
    quantity: Quantity
    on_hand: Quantity
    updated_at: UtcTime


class ReplenishmentSignalClosed(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    signal_id: Code
    location_id: Code
    item_id: Code
    reason: Literal["stock_received", "stock_adjusted", "par_changed", "cancelled"]
    on_hand: Quantity
    receipt_id: Code | None = None
    closed_at: UtcTime


# fmt: off
CHANNELS: list[Channel] = [
    Channel(INGRESS, "inventory", "counted", 1, InventoryReport, "warehouse", ("replenishment",),
            "A cycle count or a stock adjustment at one location from the warehouse system"),
    Channel("replenishment", "inventory", "adjusted", 1, InventoryAdjusted, "replenishment",
            ("observability",), "On-hand changed by a count or an adjustment, before and after"),
    Channel("replenishment", "signal", "raised", 1, ReplenishmentSignalRaised, "replenishment",
            ("procurement", "observability"),
            "Stock at or below reorder point: the quantity up to par, for the warehouse",
            readers=("warehouse",)),
    Channel("replenishment", "signal", "updated", 1, ReplenishmentSignalUpdated,
            "replenishment", ("procurement", "observability"),
            "An open signal's quantity changed as consumption went on", readers=("warehouse",)),
    Channel("replenishment", "signal", "closed", 1, ReplenishmentSignalClosed, "replenishment",
            ("procurement", "observability"), "A signal closed, usually because stock arrived",
            readers=("warehouse",)),
]
# fmt: on
