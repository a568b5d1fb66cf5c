"""What each message does to the stock, then to the signals.

Receipts add, usages take, voids give back what their usage took, counts set and adjustments
add or take. Each business document moves stock once, whatever event ids it arrives under (the
runtime's inbox already absorbs a redelivered event id). After the stock moved, every location
and item it touched is reviewed against its par level (domain.decide).

Bill-only usages do not touch on-hand: a bill-only implant was brought for the case and bought
after it, never received into stock, so taking it from stock would leave a hole no receipt fills.

InventoryAdjusted is published for warehouse counts and adjustments only: receipts, usages and
voids are already events on their own streams, and the history endpoint shows them all.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from decimal import Decimal

from sinew.common.context import Context
from sinew.common.errors import Invalid, Transient
from sinew.contracts.common import Quantity
from sinew.contracts.items import ItemUpserted, LocationUpserted, ParLevel
from sinew.contracts.receiving import GoodsReceived
from sinew.contracts.replenishment import (
    InventoryAdjusted,
    InventoryReport,
    ReplenishmentSignalClosed,
    ReplenishmentSignalRaised,
    ReplenishmentSignalUpdated,
    StockAdjustment,
    StockChange,
    StockCount,
)
from sinew.contracts.usage import ProcedureUsageRecorded, ProcedureUsageVoided
from sinew.masterdata import replica
from sinew.masterdata.replica import MasterData
from sinew.masterdata.rules import UnknownUnit, to_base

from . import store
from .domain import (
    NO_LOT,
    ZERO,
    Close,
    CloseReason,
    Raise,
    Update,
    adjustment_id,
    counted_levels,
    decide,
    needs_replenishment,
    signal_id,
)
from .store import Movement, UnitMismatch

log = logging.getLogger("sinew.replenishment")


def in_base_units(md: MasterData, item_id: str, quantity: Quantity) -> tuple[Decimal, str]:
    """Upstream services send base quantities already; the replica checks it, and converts a
    pack unit. An item the replica does not hold yet is taken at the unit it comes in."""
    item = md.item(item_id)
    if item is None:
        return quantity.value, quantity.uom
    try:
        return to_base(item, quantity), item.base_uom
    except UnknownUnit as error:
        raise Invalid(str(error)) from None


def move(ctx: Context, movement: Movement) -> store.Moved:
    try:
        return store.move(ctx.db, movement)
    except UnitMismatch as mismatch:
        # The item master will tell how the two units relate; until then, wait.
        raise Transient(str(mismatch)) from None


def par_level_of(md: MasterData, location_id: str, item_id: str) -> ParLevel | None:
    location = md.location(location_id)
    if location is None or not location.active:
        return None
    return next((p for p in location.par_levels if p.item_id == item_id), None)


def review(
    ctx: Context,
    location_id: str,
    item_ids: Iterable[str],
    cause: CloseReason,
    receipt_id: str | None = None,
) -> None:
    """Hold each item's stock at the location against its par level and act on its signal."""
    md = MasterData(ctx.db)
    at = ctx.envelope.time
    for item_id in sorted(set(item_ids)):
        level = store.level_of(ctx.db, location_id, item_id)
        if level is None:  # stock never seen: unknown, not zero
            continue
        par = par_level_of(md, location_id, item_id)
        store.refresh_level(
            ctx.db,
            location_id,
            item_id,
            par.par_level if par else None,
            par.reorder_point if par else None,
            needs_replenishment(level.on_hand, par),
            at,
        )
        signal = store.open_signal(ctx.db, location_id, item_id)
        decision = decide(level.on_hand, par, signal, cause)
        about = f"{location_id}/{item_id}"
        if isinstance(decision, Raise):
            assert par is not None
            new_id = signal_id(
                ctx.site,
                location_id,
                item_id,
                store.signals_so_far(ctx.db, location_id, item_id) + 1,
            )
            event_id = ctx.emit(
                ReplenishmentSignalRaised(
                    site=ctx.site,
                    signal_id=new_id,
                    location_id=location_id,
                    item_id=item_id,
                    quantity=Quantity(decision.quantity, level.uom),
                    on_hand=Quantity(level.on_hand, level.uom),
                    par_level=Quantity(par.par_level, level.uom),
                    reorder_point=Quantity(par.reorder_point, level.uom),
                    raised_at=at,
                ),
                about=about,
            )
            store.raise_signal(
                ctx.db,
                new_id,
                location_id,
                item_id,
                decision.quantity,
                level,
                par.par_level,
                par.reorder_point,
                at,
                event_id,
            )
        elif isinstance(decision, Update):
            assert par is not None and signal is not None
            ctx.emit(
                ReplenishmentSignalUpdated(
                    site=ctx.site,
                    signal_id=signal.signal_id,
                    location_id=location_id,
                    item_id=item_id,
                    quantity=Quantity(decision.quantity, level.uom),
                    on_hand=Quantity(level.on_hand, level.uom),
                    updated_at=at,
                ),
                about=about,
            )
            store.update_signal(
                ctx.db,
                signal.signal_id,
                decision.quantity,
                level.on_hand,
                par.par_level,
                par.reorder_point,
                at,
            )
        elif isinstance(decision, Close):
            assert signal is not None
            received = receipt_id if decision.reason == "stock_received" else None
            ctx.emit(
                ReplenishmentSignalClosed(
                    site=ctx.site,
                    signal_id=signal.signal_id,
                    location_id=location_id,
                    item_id=item_id,
                    reason=decision.reason,
                    on_hand=Quantity(level.on_hand, level.uom),
                    receipt_id=received,
                    closed_at=at,
                ),
                about=about,
            )
            store.close_signal(
                ctx.db, signal.signal_id, level.on_hand, decision.reason, received, at
            )


# -- master data --------------------------------------------------------------------------------


def on_location(location: LocationUpserted, ctx: Context) -> None:
    held = MasterData(ctx.db).location(location.location_id)
    if not replica.apply(ctx.db, location):
        return
    # A par level set, changed or taken away re-decides the signal of each item it concerns.
    before = {p.item_id for p in held.par_levels} if held else set()
    after = {p.item_id for p in location.par_levels}
    stocked = store.stocked_items(ctx.db, location.location_id)
    review(ctx, location.location_id, (before | after) & stocked, "par_changed")


# -- stock in and out ---------------------------------------------------------------------------


def on_goods_received(receipt: GoodsReceived, ctx: Context) -> None:
    if not store.first_time(
        ctx.db, f"receipt:{receipt.receipt_id}", ctx.envelope.id, ctx.envelope.time
    ):
        log.info("receipt %s already moved stock; ignored", receipt.receipt_id)
        return
    md = MasterData(ctx.db)
    received: dict[tuple[str, str], tuple[Decimal, str]] = {}
    for line in receipt.lines:
        value, uom = in_base_units(md, line.item_id, line.base_quantity)
        key = (line.item_id, line.lot or NO_LOT)
        held, held_uom = received.get(key, (ZERO, uom))
        _same_unit(line.item_id, held_uom, uom)
        received[key] = (held + value, uom)
    for (item_id, lot), (value, uom) in sorted(received.items()):
        move(
            ctx,
            Movement(
                location_id=receipt.location_id,
                item_id=item_id,
                lot=lot,
                kind="receipt",
                reference=receipt.receipt_id,
                change=value,
                uom=uom,
                source_event_id=ctx.envelope.id,
                occurred_at=receipt.received_at,
                recorded_at=ctx.envelope.time,
            ),
        )
    review(
        ctx,
        receipt.location_id,
        {item_id for item_id, _ in received},
        "stock_received",
        receipt.receipt_id,
    )


def on_usage_recorded(usage: ProcedureUsageRecorded, ctx: Context) -> None:
    seen = store.usage(ctx.db, usage.usage_id)
    if seen is not None and seen.recorded_event_id is not None:
        log.info("usage %s already taken from stock; ignored", usage.usage_id)
        return
    value, uom = in_base_units(MasterData(ctx.db), usage.item_id, usage.base_quantity)
    lot = usage.lot or NO_LOT
    store.keep_usage(
        ctx.db,
        store.Usage(
            usage.usage_id,
            usage.location_id,
            usage.item_id,
            lot,
            value,
            uom,
            usage.bill_only,
            ctx.envelope.id,
            seen.voided_event_id if seen else None,
        ),
    )
    if seen is not None:
        log.info("usage %s was voided before it arrived; takes nothing", usage.usage_id)
        return
    if usage.bill_only:
        return
    move(
        ctx,
        Movement(
            location_id=usage.location_id,
            item_id=usage.item_id,
            lot=lot,
            kind="usage",
            reference=usage.usage_id,
            change=-value,
            uom=uom,
            source_event_id=ctx.envelope.id,
            occurred_at=usage.used_at,
            recorded_at=ctx.envelope.time,
        ),
    )
    review(ctx, usage.location_id, [usage.item_id], "stock_adjusted")


def on_usage_voided(void: ProcedureUsageVoided, ctx: Context) -> None:
    seen = store.usage(ctx.db, void.usage_id)
    if seen is not None and seen.voided_event_id is not None:
        log.info("usage %s already voided; ignored", void.usage_id)
        return
    if seen is None:
        # Remembered, so that the usage, should it still come, takes nothing.
        value, uom = in_base_units(MasterData(ctx.db), void.item_id, void.base_quantity)
        store.keep_usage(
            ctx.db,
            store.Usage(
                void.usage_id,
                void.location_id,
                void.item_id,
                void.lot or NO_LOT,
                value,
                uom,
                void.bill_only,
                None,
                ctx.envelope.id,
            ),
        )
        return
    store.keep_usage(
        ctx.db,
        dataclasses.replace(seen, voided_event_id=ctx.envelope.id),
    )
    if seen.bill_only:
        return
    # Give back exactly what the usage took, where it took it.
    move(
        ctx,
        Movement(
            location_id=seen.location_id,
            item_id=seen.item_id,
            lot=seen.lot,
            kind="usage_voided",
            reference=seen.usage_id,
            change=seen.quantity,
            uom=seen.uom,
            source_event_id=ctx.envelope.id,
            occurred_at=void.voided_at,
            recorded_at=ctx.envelope.time,
            reason=void.reason,
        ),
    )
    review(ctx, seen.location_id, [seen.item_id], "stock_adjusted")


def on_stock_count(count: StockCount, ctx: Context) -> None:
    if not store.first_time(ctx.db, f"count:{count.count_id}", ctx.envelope.id, ctx.envelope.time):
        log.info("count %s already applied; ignored", count.count_id)
        return
    md = MasterData(ctx.db)
    by_item: dict[str, list[tuple[str | None, Decimal, str]]] = {}
    for line in count.lines:
        value, uom = in_base_units(md, line.item_id, line.quantity)
        by_item.setdefault(line.item_id, []).append((line.lot, value, uom))
    changes = []
    for item_id, lines in sorted(by_item.items()):
        uom = lines[0][2]
        for _, _, line_uom in lines:
            _same_unit(item_id, uom, line_uom)
        held = store.lots_held(ctx.db, count.location_id, item_id)
        targets = counted_levels(held, [(lot, value) for lot, value, _ in lines])
        for lot, counted in sorted(targets.items()):
            moved = move(
                ctx,
                Movement(
                    location_id=count.location_id,
                    item_id=item_id,
                    lot=lot,
                    kind="count",
                    reference=count.count_id,
                    change=counted - held.get(lot, ZERO),
                    uom=uom,
                    source_event_id=ctx.envelope.id,
                    occurred_at=count.counted_at,
                    recorded_at=ctx.envelope.time,
                    reason="cycle_count",
                ),
            )
            changes.append(_stock_change(item_id, lot, moved, uom, "cycle_count"))
    ctx.emit(
        InventoryAdjusted(
            site=ctx.site,
            adjustment_id=adjustment_id(ctx.site, "count", count.count_id),
            location_id=count.location_id,
            source="count",
            reference=count.count_id,
            lines=tuple(changes),
            adjusted_by=count.counted_by,
            adjusted_at=count.counted_at,
        ),
        about=count.location_id,
    )
    review(ctx, count.location_id, by_item, "stock_adjusted")


def on_stock_adjustment(adjustment: StockAdjustment, ctx: Context) -> None:
    source = f"adjustment:{adjustment.adjustment_id}"
    if not store.first_time(ctx.db, source, ctx.envelope.id, ctx.envelope.time):
        log.info("adjustment %s already applied; ignored", adjustment.adjustment_id)
        return
    md = MasterData(ctx.db)
    changes = []
    for line in adjustment.lines:
        value, uom = in_base_units(md, line.item_id, line.change)
        lot = line.lot or NO_LOT
        moved = move(
            ctx,
            Movement(
                location_id=adjustment.location_id,
                item_id=line.item_id,
                lot=lot,
                kind="adjustment",
                reference=adjustment.adjustment_id,
                change=value,
                uom=uom,
                source_event_id=ctx.envelope.id,
                occurred_at=adjustment.adjusted_at,
                recorded_at=ctx.envelope.time,
                reason=line.reason,
            ),
        )
        changes.append(_stock_change(line.item_id, lot, moved, uom, line.reason))
    ctx.emit(
        InventoryAdjusted(
            site=ctx.site,
            adjustment_id=adjustment_id(ctx.site, "adjustment", adjustment.adjustment_id),
            location_id=adjustment.location_id,
            source="adjustment",
            reference=adjustment.adjustment_id,
            lines=tuple(changes),
            adjusted_by=adjustment.adjusted_by,
            adjusted_at=adjustment.adjusted_at,
        ),
        about=adjustment.location_id,
    )
    review(
        ctx, adjustment.location_id, {line.item_id for line in adjustment.lines}, "stock_adjusted"
    )


def on_inventory_report(report: InventoryReport, ctx: Context) -> None:
    if isinstance(report, StockCount):
        on_stock_count(report, ctx)
    else:
        on_stock_adjustment(report, ctx)


def _same_unit(item_id: str, held: str, uom: str) -> None:
    if held != uom:
        raise Transient(f"{item_id} comes in {held} and {uom}; waiting for its item master")


def _stock_change(item_id: str, lot: str, moved: store.Moved, uom: str, reason) -> StockChange:
    return StockChange(
        item_id=item_id,
        before=Quantity(moved.before, uom),
        change=Quantity(moved.after - moved.before, uom),
        after=Quantity(moved.after, uom),
        reason=reason,
        lot=lot or None,
    )


HANDLERS = {
    ItemUpserted: replica.HANDLERS[ItemUpserted],
    LocationUpserted: on_location,
    GoodsReceived: on_goods_received,
    ProcedureUsageRecorded: on_usage_recorded,
    ProcedureUsageVoided: on_usage_voided,
    # The inventory channel carries either kind: the runtime checks the channel's union is
    # handled, then runs the handler of the kind decoded.
    InventoryReport: on_inventory_report,
    StockCount: on_stock_count,
    StockAdjustment: on_stock_adjustment,
}
