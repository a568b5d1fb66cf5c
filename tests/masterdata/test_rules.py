"""The master-data rules every service prices, converts and substitutes with."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sinew.contracts.common import Quantity
from sinew.contracts.items import Contract, ContractPrice, Item, PackSize, PriceTier, Substitution
from sinew.masterdata.rules import (
    UnknownUnit,
    approved_substitution,
    contract_price,
    convert,
    to_base,
)

STENT = Item(
    site="north",
    item_id="STENT-DES-3x18",
    version=1,
    description="Drug-eluting stent",
    base_uom="EA",
    packs=(PackSize(uom="BX", base_units=Decimal(10)),),
    implant=True,
)


def contract(
    number: str,
    price: str,
    *,
    uom: str = "EA",
    supplier: str = "MEDSUP",
    start: date = date(2026, 1, 1),
    end: date | None = None,
    tiers=(),
    active: bool = True,
) -> Contract:
    return Contract(
        site="north",
        contract_number=number,
        version=1,
        supplier_id=supplier,
        effective_from=start,
        effective_to=end,
        active=active,
        prices=(
            ContractPrice(item_id=STENT.item_id, uom=uom, unit_price=Decimal(price), tiers=tiers),
        ),
    )


def test_units_convert_through_the_items_packs():
    assert to_base(STENT, Quantity(value=Decimal(2), uom="BX")) == 20
    assert convert(STENT, Quantity(value=Decimal(25), uom="EA"), "BX") == Decimal("2.5")
    with pytest.raises(UnknownUnit, match="has no unit of measure CA"):
        to_base(STENT, Quantity(value=Decimal(1), uom="CA"))


def test_the_contract_price_in_force_per_requested_unit():
    quote = contract_price(
        STENT,
        [contract("C-1", "1200.00")],
        "MEDSUP",
        date(2026, 3, 1),
        Quantity(value=Decimal(2), uom="EA"),
    )
    assert (quote.contract_number, quote.unit_price, quote.uom) == ("C-1", Decimal("1200.00"), "EA")
    per_box = contract_price(
        STENT,
        [contract("C-1", "1200.00")],
        "MEDSUP",
        date(2026, 3, 1),
        Quantity(value=Decimal(1), uom="BX"),
    )
    assert per_box.unit_price == Decimal("12000.00")


def test_no_price_outside_the_dates_for_another_supplier_or_an_inactive_contract():
    on = date(2026, 3, 1)
    one = Quantity(value=Decimal(1), uom="EA")
    assert (
        contract_price(STENT, [contract("C", "1", end=date(2026, 2, 28))], "MEDSUP", on, one)
        is None
    )
    assert (
        contract_price(STENT, [contract("C", "1", start=date(2026, 3, 2))], "MEDSUP", on, one)
        is None
    )
    assert contract_price(STENT, [contract("C", "1", supplier="OTHER")], "MEDSUP", on, one) is None
    assert contract_price(STENT, [contract("C", "1", active=False)], "MEDSUP", on, one) is None
    # Both ends are inclusive.
    assert contract_price(STENT, [contract("C", "1", start=on, end=on)], "MEDSUP", on, one)


def test_quantity_tiers_apply_in_the_prices_unit():
    tiered = contract(
        "C-T",
        "1200.00",
        tiers=(PriceTier(min_quantity=Decimal(10), unit_price=Decimal("1100.00")),),
    )
    on = date(2026, 3, 1)
    assert contract_price(
        STENT, [tiered], "MEDSUP", on, Quantity(value=Decimal(9), uom="EA")
    ).unit_price == Decimal("1200.00")
    box = contract_price(STENT, [tiered], "MEDSUP", on, Quantity(value=Decimal(1), uom="BX"))
    assert box.unit_price == Decimal("11000.00")
    assert box.tier_min_quantity == Decimal(10)


def test_the_lowest_price_in_force_wins_then_the_latest_contract():
    on = date(2026, 3, 1)
    one = Quantity(value=Decimal(1), uom="EA")
    offers = [contract("C-OLD", "1200.00"), contract("C-NEW", "1150.00", start=date(2026, 2, 1))]
    assert contract_price(STENT, offers, "MEDSUP", on, one).contract_number == "C-NEW"
    same = [contract("C-A", "1200.00"), contract("C-B", "1200.00", start=date(2026, 2, 1))]
    assert contract_price(STENT, same, "MEDSUP", on, one).contract_number == "C-B"


@given(
    boxes=st.integers(min_value=1, max_value=500),
    price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999.99"), places=2),
)
def test_pricing_does_not_depend_on_the_unit_it_is_asked_in(boxes, price):
    offer = [contract("C", str(price))]
    on = date(2026, 3, 1)
    per_box = contract_price(STENT, offer, "MEDSUP", on, Quantity(value=Decimal(boxes), uom="BX"))
    per_each = contract_price(
        STENT, offer, "MEDSUP", on, Quantity(value=Decimal(boxes * 10), uom="EA")
    )
    assert per_box.unit_price == per_each.unit_price * 10


def test_an_approved_substitution_holds_only_in_force():
    approval = Substitution(
        site="north",
        substitution_id="SUB-1",
        version=1,
        item_id="A",
        substitute_item_id="B",
        contract_number="C-1",
        effective_from=date(2026, 1, 1),
        effective_to=date(2026, 6, 30),
    )
    assert approved_substitution([approval], "A", "B", date(2026, 3, 1)) == approval
    assert approved_substitution([approval], "A", "B", date(2026, 7, 1)) is None
    assert approved_substitution([approval], "A", "C", date(2026, 3, 1)) is None
    assert approved_substitution([approval], "B", "A", date(2026, 3, 1)) is None
