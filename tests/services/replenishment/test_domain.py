"""The replenishment rules without NATS or SQLite: when a signal is raised, follows the stock,
and closes, and what a count sets."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from sinew.contracts.items import ParLevel
from sinew.services.replenishment.domain import (
    Close,
    OpenSignal,
    Raise,
    Update,
    as_text,
    counted_levels,
    decide,
    is_discrepancy,
    needs_replenishment,
)

D = Decimal
CATH_LAB_STENT = ParLevel(item_id="STENT-DES-3x18", par_level=D(4), reorder_point=D(2))
OPEN_FOR_3 = OpenSignal("RS-1", D(3))


def test_stock_falling_to_the_reorder_point_raises_a_signal_up_to_par():
    assert decide(D(2), CATH_LAB_STENT, None, "stock_adjusted") == Raise(D(2))
    assert decide(D(1), CATH_LAB_STENT, None, "stock_adjusted") == Raise(D(3))


def test_stock_above_the_reorder_point_raises_nothing():
    assert decide(D(3), CATH_LAB_STENT, None, "stock_adjusted") is None
    assert decide(D(1), None, None, "stock_adjusted") is None


def test_an_open_signal_follows_consumption_and_is_never_raised_twice():
    assert decide(D(1), CATH_LAB_STENT, OPEN_FOR_3, "stock_adjusted") is None
    assert decide(D(0), CATH_LAB_STENT, OPEN_FOR_3, "stock_adjusted") == Update(D(4))


def test_negative_stock_asks_for_the_hole_too():
    assert decide(D(-2), CATH_LAB_STENT, None, "stock_adjusted") == Raise(D(6))
    assert is_discrepancy(D(-2)) and not is_discrepancy(D(0))


def test_a_partial_delivery_still_at_the_reorder_point_shrinks_the_signal():
    assert decide(D(2), CATH_LAB_STENT, OPEN_FOR_3, "stock_received") == Update(D(2))


def test_stock_back_above_the_reorder_point_closes_the_signal_with_its_cause():
    assert decide(D(3), CATH_LAB_STENT, OPEN_FOR_3, "stock_received") == Close("stock_received")
    assert decide(D(4), CATH_LAB_STENT, OPEN_FOR_3, "stock_adjusted") == Close("stock_adjusted")


def test_a_par_level_taken_away_closes_the_signal_as_par_changed():
    assert decide(D(1), None, OPEN_FOR_3, "stock_received") == Close("par_changed")


def test_a_par_level_equal_to_its_reorder_point_met_exactly_needs_nothing():
    flat = ParLevel(item_id="X", par_level=D(2), reorder_point=D(2))
    assert not needs_replenishment(D(2), flat)
    assert decide(D(2), flat, None, "stock_adjusted") is None
    assert decide(D(2), flat, OpenSignal("RS-1", D(1)), "par_changed") == Close("par_changed")


def test_a_count_sets_the_lots_it_names_and_leaves_the_others():
    held = {"L1": D(3), "L2": D(2)}
    assert counted_levels(held, [("L1", D(1))]) == {"L1": D(1)}
    assert counted_levels(held, [("L3", D(1)), ("L3", D(2))]) == {"L3": D(3)}


def test_a_count_line_without_lot_covers_every_lot_not_named():
    held = {"L1": D(3), "L2": D(2), "": D(1)}
    assert counted_levels(held, [(None, D(4))]) == {"L1": D(0), "L2": D(0), "": D(4)}
    assert counted_levels(held, [(None, D(1)), ("L2", D(2))]) == {"L1": D(0), "L2": D(2), "": D(1)}


def test_quantities_are_shown_without_exponent_or_trailing_zeros():
    assert as_text(D("1.500")) == "1.5"
    assert as_text(D("100")) == "100"
    assert as_text(D("-0.0")) == "0"
    assert as_text(D(3) - D(5)) == "-2"


# -- any sequence of usages, voids, receipts and counts -----------------------------------------

quantities = st.integers(min_value=0, max_value=6).map(D)
movements = st.lists(
    st.tuples(st.sampled_from(["usage", "receipt", "count", "par"]), quantities), max_size=60
)
par_levels = st.tuples(st.integers(0, 8), st.integers(0, 8)).map(
    lambda p: ParLevel(item_id="X", par_level=D(max(p)), reorder_point=D(min(p)))
)


@given(movements, par_levels, quantities)
def test_any_sequence_keeps_at_most_one_open_signal_for_exactly_the_shortfall(
    sequence, first_par, opening
):
    on_hand, par, signal = opening, first_par, None
    raised = 0
    for kind, quantity in sequence:
        if kind == "usage":
            on_hand -= quantity
        elif kind == "receipt":
            on_hand += quantity
        elif kind == "count":
            on_hand = quantity
        else:
            par = ParLevel(
                item_id="X", par_level=par.reorder_point + quantity, reorder_point=par.reorder_point
            )
        cause = {"receipt": "stock_received", "par": "par_changed"}.get(kind, "stock_adjusted")
        decision = decide(on_hand, par, signal, cause)
        if isinstance(decision, Raise):
            assert signal is None, "a second signal raised while one is open"
            raised += 1
            signal = OpenSignal(f"RS-{raised}", decision.quantity)
        elif isinstance(decision, Update):
            assert signal is not None and decision.quantity != signal.quantity
            signal = OpenSignal(signal.signal_id, decision.quantity)
        elif isinstance(decision, Close):
            assert signal is not None
            assert decision.reason == cause
            assert on_hand > par.reorder_point or on_hand >= par.par_level
            signal = None
        # Open exactly while the stock needs replenishing, for what brings it back to par.
        assert (signal is not None) == needs_replenishment(on_hand, par)
        if signal is not None:
            assert signal.quantity == par.par_level - on_hand > 0


@given(st.lists(st.integers(1, 3).map(D), min_size=1, max_size=40), par_levels)
def test_usages_arriving_together_raise_one_signal_then_only_update_it(usages, par):
    on_hand = par.par_level
    signal, events = None, []
    for quantity in usages:
        on_hand -= quantity
        decision = decide(on_hand, par, signal, "stock_adjusted")
        events.append(type(decision).__name__)
        if isinstance(decision, Raise | Update):
            signal = OpenSignal("RS-1", decision.quantity)
    assert events.count("Raise") <= 1
    assert "Close" not in events
    if needs_replenishment(on_hand, par):
        assert events.count("Raise") == 1
        assert all(e in ("Update", "NoneType") for e in events[events.index("Raise") + 1 :])
        assert signal.quantity == par.par_level - on_hand
