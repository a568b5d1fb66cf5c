"""Procurement's pure rules without NATS or SQLite: the approval policy as data, the purchase
order's state machine, pricing from the contract in force, and what an acknowledgement changes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import msgspec
import pytest
import scenario_data as scenario

from sinew.contracts.common import Quantity
from sinew.contracts.items import ContractPrice, PackSize
from sinew.contracts.procurement import AcknowledgementLine, PurchaseOrder
from sinew.masterdata.rules import contract_price
from sinew.services.procurement import approval, domain
from sinew.services.procurement.approval import ApprovalPolicy, LineFacts, decide
from sinew.services.procurement.domain import IllegalTransition, transition

ON = date(2025, 3, 14)
ON_CONTRACT = LineFacts(non_formulary=False, off_contract=False, priced=True)


def ea(value) -> Quantity:
    return Quantity(Decimal(str(value)), "EA")


# -- the approval policy -------------------------------------------------------------------------


def policy(**changes) -> ApprovalPolicy:
    document = {
        "version": "v7",
        "amount_bands": {
            "default": [
                {"up_to": "1000.00", "approver_roles": []},
                {"up_to": "20000.00", "approver_roles": ["supply-chain"]},
                {"approver_roles": ["cfo"]},
            ],
            "CC-ICU": [{"up_to": "3000.00"}, {"approver_roles": ["icu-manager"]}],
        },
        "non_formulary": {"requires_approval": True, "approver_roles": ["pharmacy"]},
        "off_contract": {"requires_approval": True, "approver_roles": ["supply-chain"]},
        "urgent": {"requires_approval": False},
        **changes,
    }
    return msgspec.json.decode(msgspec.json.encode(document), type=ApprovalPolicy)


def decision_for(total: str, cost_centre: str = "CC-CARDIO", lines=(ON_CONTRACT,), **kw):
    kw.setdefault("origin", "person")
    kw.setdefault("urgent", False)
    return decide(
        kw.pop("rules", None) or policy(),
        cost_centre_id=cost_centre,
        estimated_total=Decimal(total),
        lines=lines,
        **kw,
    )


def test_amount_bands_route_by_total_and_cost_centre():
    assert decision_for("1000.00").automatic
    assert decision_for("1000.01").needs == {"amount": ("supply-chain",)}
    assert decision_for("20000.01").needs == {"amount": ("cfo",)}
    # The ICU has its own bands; everyone else takes the default.
    assert decision_for("2500.00", "CC-ICU").automatic
    assert decision_for("3000.01", "CC-ICU").needs == {"amount": ("icu-manager",)}


def test_non_formulary_and_off_contract_need_their_approvers_and_urgent_is_only_flagged():
    lines = (LineFacts(non_formulary=True, off_contract=True, priced=True),)
    decision = decision_for("10.00", lines=lines, urgent=True)
    assert decision.reasons == ("non_formulary", "off_contract")
    assert decision.urgent is True
    strict = policy(urgent={"requires_approval": True, "approver_roles": ["nurse-manager"]})
    assert decision_for("10.00", rules=strict, urgent=True).needs == {"urgent": ("nurse-manager",)}


def test_one_approver_must_cover_every_reason_and_admin_covers_all():
    lines = (LineFacts(non_formulary=True, off_contract=False, priced=True),)
    decision = decision_for("5000.00", lines=lines)
    assert decision.missing({"supply-chain"}) == {"non_formulary": ("pharmacy",)}
    assert decision.missing({"supply-chain", "pharmacy"}) == {}
    assert decision.missing({"admin"}) == {}
    assert decision.by == "policy v7"


def test_what_was_already_consumed_is_approved_by_policy_unless_it_has_no_price():
    lines = (LineFacts(non_formulary=True, off_contract=False, priced=True),)
    assert decision_for("18500.00", lines=lines, origin="bill_only").automatic
    unpriced = (LineFacts(non_formulary=False, off_contract=True, priced=False),)
    assert decision_for("0", lines=unpriced, origin="bill_only").needs == {
        "off_contract": ("supply-chain",)
    }


def test_a_policy_that_cannot_decide_every_amount_is_refused_at_load(tmp_path):
    with pytest.raises(ValueError, match="one open band"):
        policy(amount_bands={"default": [{"up_to": "10.00"}]})
    with pytest.raises(ValueError, match='needs a "default"'):
        policy(amount_bands={"CC-ICU": [{}]})
    broken = tmp_path / "approval-policy.v9.json"
    broken.write_text('{"version": "v9"}')
    with pytest.raises(SystemExit, match=r"approval-policy\.v9\.json is not valid"):
        approval.load(broken)


def test_the_shipped_policy_loads_and_approves_scenario_1_itself():
    shipped = approval.load()
    assert shipped.version == "v1"
    two_stents = decide(
        shipped,
        origin="person",
        cost_centre_id=scenario.CARDIOLOGY,
        estimated_total=Decimal("2400.00"),
        lines=[ON_CONTRACT],
        urgent=False,
    )
    assert two_stents.automatic


# -- the purchase order's life -------------------------------------------------------------------


def test_a_purchase_order_lives_from_draft_to_closed():
    state = "draft"
    for action, expected in [
        ("approve", "approved"),
        ("send", "sent"),
        ("acknowledge", "acknowledged"),
        ("supplier_change", "acknowledged"),
        ("receive_part", "partially_received"),
        ("receive_all", "received"),
        ("close_received", "closed"),
    ]:
        state = transition(state, action)
        assert state == expected
    assert domain.legal_actions("closed") == []
    assert domain.legal_actions("cancelled") == []


@pytest.mark.parametrize(
    ("state", "action", "reason"),
    [
        ("partially_received", "cancel", "goods were already received against it; close it short"),
        ("sent", "buyer_change", "the supplier already has it"),
        ("draft", "send", "send is not possible once it is draft"),
        ("cancelled", "acknowledge", "acknowledge is not possible once it is cancelled"),
        ("received", "close_short", "every line was received; close it as fully received"),
    ],
)
def test_an_illegal_transition_says_why(state, action, reason):
    with pytest.raises(IllegalTransition) as refused:
        transition(state, action)
    assert refused.value.reason.endswith(reason)
    assert refused.value.reason.startswith("cannot ")


def test_a_bill_only_order_closes_on_its_invoice_and_is_never_received():
    assert transition("sent", "close_bill_only", bill_only=True) == "closed"
    with pytest.raises(IllegalTransition, match="needs no receipt"):
        transition("sent", "receive_all", bill_only=True)
    with pytest.raises(IllegalTransition, match="only a bill-only"):
        transition("sent", "close_bill_only")


def test_a_receipt_completes_an_order_only_when_every_line_is_in():
    line = domain.LineProgress
    assert domain.receipt_action([line(Decimal(30), Decimal(0))]) is None
    assert domain.receipt_action([line(Decimal(30), Decimal(20))]) == "receive_part"
    both = [line(Decimal(30), Decimal(30)), line(Decimal(2), Decimal(1))]
    assert domain.receipt_action(both) == "receive_part"
    # A line the supplier rejected is ordered at 0 and never holds the order open.
    done = [line(Decimal(30), Decimal(31)), line(Decimal(0), Decimal(0))]
    assert domain.receipt_action(done) == "receive_all"


# -- quantities and prices -----------------------------------------------------------------------


def gauze_in_boxes():
    return msgspec.structs.replace(
        scenario.guidewire(), item_id="GAUZE", packs=(PackSize(uom="BX", base_units=Decimal(10)),)
    )


def test_scenario_13_a_box_of_ten_is_priced_from_the_each_price():
    item = gauze_in_boxes()
    contract = msgspec.structs.replace(
        scenario.medsup_contract(),
        prices=(ContractPrice(item_id="GAUZE", uom="EA", unit_price=Decimal("1.25")),),
    )
    boxes = Quantity(Decimal(3), "BX")
    quote = contract_price(item, [contract], scenario.MEDSUP, ON, boxes)
    line = domain.priced_line(1, item, boxes, quote, None, scenario.MEDSUP)
    assert (line.unit_price, line.extended_amount) == (Decimal("12.50"), Decimal("37.50"))
    assert str(line.unit_price) == "12.50"  # not 12.5000
    assert line.contract_number == scenario.CONTRACT and not line.off_contract
    assert domain.ordered_base(item, line) == Decimal(30)


def test_a_line_without_a_contract_takes_the_given_price_and_is_flagged():
    item = scenario.stent()
    line = domain.priced_line(2, item, ea(2), None, Decimal("1300"), scenario.MEDSUP)
    assert line.off_contract and line.contract_number is None
    assert (line.unit_price, line.extended_amount) == (Decimal("1300.00"), Decimal("2600.00"))
    assert line.supplier_part == "MS-DES-318"
    with pytest.raises(ValueError, match="no contract price and no price given"):
        domain.priced_line(3, item, ea(1), None, None, scenario.MEDSUP)


def test_a_shortfall_is_ordered_in_whole_packs_rounded_up():
    item = gauze_in_boxes()
    assert domain.order_quantity(item, Decimal(3), "BX") == Quantity(Decimal(1), "BX")
    assert domain.order_quantity(item, Decimal(25), "BX") == Quantity(Decimal(3), "BX")
    assert domain.order_quantity(item, Decimal(30), "BX") == Quantity(Decimal(3), "BX")
    assert domain.order_quantity(item, Decimal(7), "EA") == Quantity(Decimal(7), "EA")


def test_the_cheapest_supplier_is_compared_per_base_unit():
    item = scenario.guidewire()
    contract = scenario.medsup_contract()
    rival = msgspec.structs.replace(
        contract,
        contract_number="RIVAL-1",
        supplier_id="RIVAL",
        prices=(ContractPrice(item_id=item.item_id, uom="EA", unit_price=Decimal("44.00")),),
    )
    ten = Quantity(Decimal(10), "EA")
    quotes = [contract_price(item, [c], c.supplier_id, ON, ten) for c in (contract, rival)]
    # MEDSUP's 450.00 a box of 10 is 45.00 each: the rival's 44.00 each wins.
    assert domain.cheapest(item, quotes).supplier_id == "RIVAL"


# -- what an acknowledgement changes ------------------------------------------------------------


def order() -> PurchaseOrder:
    stent = scenario.stent()
    quote = contract_price(stent, [scenario.medsup_contract()], scenario.MEDSUP, ON, ea(2))
    lines = (
        domain.priced_line(1, stent, ea(2), quote, None, scenario.MEDSUP),
        domain.priced_line(2, stent, ea(1), None, Decimal("1300.00"), scenario.MEDSUP),
        domain.priced_line(3, stent, ea(1), quote, None, scenario.MEDSUP),
    )
    return PurchaseOrder(
        site="north",
        po_number="PO-1",
        supplier_id=scenario.MEDSUP,
        order_date=ON,
        cost_centre_id=scenario.CARDIOLOGY,
        ship_to_location_id=scenario.CATH_LAB,
        lines=lines,
        total=domain.total(lines),
    )


def same_unit(line, quantity):
    return quantity.value


def test_quantity_changes_and_rejections_revise_the_order_but_the_contract_price_stands():
    po = order()
    answer = domain.answer(
        po,
        [
            AcknowledgementLine(line_number=1, status="quantity_changed", quantity=ea(1)),
            AcknowledgementLine(line_number=2, status="price_changed", unit_price=Decimal("1250")),
            AcknowledgementLine(line_number=3, status="price_changed", unit_price=Decimal("1250")),
        ],
        same_unit,
    )
    first, second, third = answer.lines
    assert first.quantity == ea(1) and first.extended_amount == Decimal("1200.00")
    assert second.unit_price == Decimal("1250.00")  # off contract: the supplier's price is news
    assert third.unit_price == Decimal("1200.00")  # on contract: it is not
    assert answer.price_not_taken == {3: Decimal("1250")}
    assert answer.changed == (
        "line 1 (STENT-DES-3x18): quantity 2 -> 1 EA",
        "line 2 (STENT-DES-3x18): unit price 1300.00 -> 1250.00",
    )
    revised = domain.revised(po, answer.lines)
    assert revised.revision == 2 and revised.total == Decimal("3650.00")

    rejected = domain.answer(po, [AcknowledgementLine(line_number=3, status="rejected")], same_unit)
    assert rejected.lines[2].quantity == ea(0)
    assert rejected.changed == ("line 3 (STENT-DES-3x18): rejected by the supplier",)


def test_backorders_and_substitutes_change_nothing_ordered():
    po = order()
    answer = domain.answer(
        po,
        [
            AcknowledgementLine(line_number=1, status="backordered", expected_ship_date=ON),
            AcknowledgementLine(line_number=2, status="substituted", substitute_item_id="X"),
        ],
        same_unit,
    )
    assert answer.lines == po.lines and answer.changed == ()
    with pytest.raises(KeyError, match="has no line 9"):
        domain.answer(po, [AcknowledgementLine(line_number=9, status="accepted")], same_unit)
