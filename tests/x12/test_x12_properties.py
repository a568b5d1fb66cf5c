"""write -> parse is the identity for every document the contracts allow and X12 carries."""

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from sinew.contracts.common import Quantity
from sinew.contracts.matching import InvoiceLine, InvoiceSubmission
from sinew.contracts.procurement import (
    AcknowledgementLine,
    BillOnlyUsage,
    PurchaseOrder,
    PurchaseOrderAcknowledgement,
    PurchaseOrderLine,
)
from sinew.contracts.receiving import AdvanceShipNotice, ShippedItem, ShippedLot, ShippedOrder
from sinew.x12 import (
    parse_810,
    parse_850,
    parse_855,
    parse_856,
    write_810,
    write_850,
    write_855,
    write_856,
)

SITE = "north"
ENVELOPE = dict(sender_id="SINEWNORTH", receiver_id="SUPPLIER", control_number=1)
# The usual delimiters (* ~ : ^) are in the alphabet on purpose: the writer must pick others.
ALPHABET = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -_/.,#&()*~:^'|!éÅµ"
)
codes = st.text(ALPHABET, min_size=1, max_size=24).filter(lambda s: not s[0].isspace())
texts = st.text(ALPHABET, min_size=1, max_size=300)
units = st.sampled_from(["EA", "BX", "CA", "PK", "BOX10"])
gtins = st.from_regex(r"\d{8}|\d{12}|\d{13}|\d{14}", fullmatch=True)
days = st.dates(min_value=date(1990, 1, 1), max_value=date(2099, 12, 31))
money = st.decimals(min_value=0, max_value=10_000_000, places=2, allow_nan=False)
counts = st.integers(min_value=1, max_value=10_000).map(Decimal)
fractions = st.decimals(min_value=Decimal("0.001"), max_value=1000, places=3, allow_nan=False)
quantities = st.builds(Quantity, st.one_of(counts, fractions), units)
moments = st.builds(
    lambda day, seconds, hours: (
        datetime.combine(day, datetime.min.time(), tzinfo=UTC).astimezone(
            timezone(timedelta(hours=hours))
        )
        + timedelta(seconds=seconds)
    ),
    days,
    st.integers(min_value=0, max_value=86_399),
    st.integers(min_value=-12, max_value=14),
)


def optional(strategy):
    return st.none() | strategy


def numbered(line_strategy):
    """Lines numbered 1, 2, 3 ...: the readers refuse a line number used twice."""
    return st.lists(line_strategy, min_size=1, max_size=6).map(
        lambda makers: tuple(make(number) for number, make in enumerate(makers, start=1))
    )


bill_only_usages = st.builds(
    BillOnlyUsage,
    bill_only_request_id=codes,
    usage_id=codes,
    case_id=codes,
    lot=optional(codes),
    serial=optional(codes),
    expiry=optional(days),
)


@st.composite
def po_line(draw):
    quantity, price = draw(quantities), draw(money)
    fields = dict(
        item_id=draw(codes),
        quantity=quantity,
        unit_price=price,
        extended_amount=draw(money),
        description=draw(optional(texts)),
        supplier_part=draw(optional(codes)),
        contract_number=draw(optional(codes)),
        bill_only_usage=draw(optional(bill_only_usages)),
    )
    return lambda number: PurchaseOrderLine(line_number=number, **fields)


@st.composite
def purchase_orders(draw):
    bill_only = draw(st.booleans())
    return PurchaseOrder(
        site=SITE,
        po_number=draw(codes),
        revision=draw(st.integers(min_value=1, max_value=99)),
        supplier_id=draw(codes),
        order_date=draw(days),
        cost_centre_id=draw(codes),
        ship_to_location_id=draw(codes),
        currency=draw(st.sampled_from(["USD", "CAD", "EUR"])),
        lines=draw(numbered(po_line())),
        total=draw(money),
        requisition_id=draw(optional(codes)),
        bill_only=bill_only,
        case_id=draw(optional(codes)),
        urgent=not bill_only and draw(st.booleans()),  # a consigned order is never "rush"
    )


@st.composite
def invoice_line(draw):
    quantity, price = draw(quantities), draw(money)
    fields = dict(
        quantity=quantity,
        unit_price=price,
        extended_amount=quantity.value * price,  # an 810 line has no amount of its own
        item_id=draw(optional(codes)),
        supplier_part=draw(optional(codes)),
        gtin=draw(optional(gtins)),
        description=draw(optional(texts)),
        po_line_number=draw(optional(st.integers(min_value=1, max_value=999))),
        lot=draw(optional(codes)),
        serial=draw(optional(codes)),
    )
    return lambda number: InvoiceLine(line_number=number, **fields)


invoices = st.builds(
    InvoiceSubmission,
    site=st.just(SITE),
    supplier_id=codes,
    invoice_number=codes,
    invoice_date=days,
    currency=st.sampled_from(["USD", "CAD"]),
    lines=numbered(invoice_line()),
    subtotal=money,
    freight=money,
    tax=money,
    total=money,
    po_number=optional(codes),
    due_date=optional(days),
    payment_terms=optional(codes),
)

ack_lines = st.builds(
    lambda status, quantity, price, ship, item, part, note: (
        lambda number: AcknowledgementLine(
            line_number=number,
            status=status,
            quantity=quantity,
            unit_price=price,
            expected_ship_date=ship,
            substitute_item_id=item,
            substitute_supplier_part=part,
            note=note,
        )
    ),
    st.sampled_from(
        ["accepted", "quantity_changed", "price_changed", "backordered", "substituted", "rejected"]
    ),
    optional(quantities),
    optional(money),
    optional(days),
    optional(codes),
    optional(codes),
    optional(st.text(ALPHABET, min_size=1, max_size=1000)),
)

acknowledgements = st.builds(
    PurchaseOrderAcknowledgement,
    site=st.just(SITE),
    po_number=codes,
    supplier_id=codes,
    status=st.sampled_from(["accepted", "accepted_with_changes", "rejected"]),
    lines=st.just(()) | numbered(ack_lines),
    acknowledgement_number=optional(codes),
    acknowledged_at=moments,
)

shipped_lots = st.builds(
    ShippedLot,
    quantity=quantities,
    lot=optional(codes),
    expiry=optional(days),
    serials=st.lists(codes, max_size=5).map(tuple),
)
shipped_items = st.builds(
    ShippedItem,
    quantity=quantities,
    po_line_number=optional(st.integers(min_value=1, max_value=999)),
    item_id=codes,  # an 856 item needs at least one product id
    supplier_part=optional(codes),
    gtin=optional(gtins),
    lots=st.lists(shipped_lots, max_size=3).map(tuple),
)
shipped_orders = st.builds(
    ShippedOrder, po_number=codes, items=st.lists(shipped_items, min_size=1, max_size=3).map(tuple)
)
ship_notices = st.builds(
    AdvanceShipNotice,
    site=st.just(SITE),
    asn_number=codes,
    supplier_id=codes,
    orders=st.lists(shipped_orders, min_size=1, max_size=3).map(tuple),
    shipped_at=moments,
    expected_at=optional(moments),
    ship_to_location_id=optional(codes),
    carrier=optional(st.text(ALPHABET, min_size=1, max_size=35)),
    tracking_number=optional(codes),
)


@settings(max_examples=150, deadline=None)
@given(purchase_orders())
def test_a_purchase_order_survives_the_850(po):
    assert parse_850(write_850(po, **ENVELOPE), SITE) == po


@settings(max_examples=150, deadline=None)
@given(invoices)
def test_an_invoice_survives_the_810(invoice):
    assert parse_810(write_810(invoice, **ENVELOPE), SITE) == invoice


@settings(max_examples=100, deadline=None)
@given(acknowledgements)
def test_an_acknowledgement_survives_the_855(ack):
    assert parse_855(write_855(ack, **ENVELOPE), SITE) == ack


@settings(max_examples=100, deadline=None)
@given(ship_notices)
def test_a_ship_notice_survives_the_856(asn):
    assert parse_856(write_856(asn, **ENVELOPE), SITE) == asn
