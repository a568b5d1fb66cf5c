"""In-memory facts for the pure matcher: an item sold in eaches and packs, a contract, a PO, its
receipts and an invoice, built from plain numbers (no NATS, no SQLite)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from sinew.contracts.common import Quantity
from sinew.contracts.items import Contract, ContractPrice, Item, PackSize, Substitution
from sinew.contracts.matching import InvoiceLine, InvoiceSubmission
from sinew.contracts.procurement import PurchaseOrder, PurchaseOrderLine
from sinew.services.matching.domain import Delivery, MatchFacts
from sinew.services.matching.policies import Tolerance, Tolerances

SITE = "north"
SUPPLIER = "MEDSUP"
ITEM = "GLOVE-M"
ORDER_DATE = date(2024, 3, 1)
SCENARIO_TOLERANCES = Tolerances(
    version="test",
    price=Tolerance(percent=Decimal(2), absolute=Decimal("25.00")),
    quantity=Tolerance(percent=Decimal(0), absolute=Decimal(0)),
)


def item(item_id: str = ITEM, pack: int = 10) -> Item:
    return Item(
        site=SITE,
        item_id=item_id,
        version=1,
        description=f"{item_id} test item",
        base_uom="EA",
        packs=(PackSize(uom="BX", base_units=Decimal(pack)),),
    )


def contract(price: Decimal, item_id: str = ITEM, *more: ContractPrice) -> Contract:
    return Contract(
        site=SITE,
        contract_number="C-1",
        version=1,
        supplier_id=SUPPLIER,
        effective_from=date(2024, 1, 1),
        prices=(ContractPrice(item_id=item_id, uom="EA", unit_price=price), *more),
    )


def substitution(ordered: str, substitute: str, units: Decimal = Decimal(1)) -> Substitution:
    return Substitution(
        site=SITE,
        substitution_id=f"SUB-{substitute}",
        version=1,
        item_id=ordered,
        substitute_item_id=substitute,
        contract_number="C-1",
        substitute_units=units,
    )


def order(*lines: tuple[str, Decimal, str, Decimal], **changes) -> PurchaseOrder:
    """Lines of (item, quantity, unit of measure, unit price)."""
    po_lines = tuple(
        PurchaseOrderLine(
            line_number=n,
            item_id=item_id,
            quantity=Quantity(Decimal(quantity), uom),
            unit_price=Decimal(price),
            extended_amount=Decimal(price) * Decimal(quantity),
        )
        for n, (item_id, quantity, uom, price) in enumerate(lines, start=1)
    )
    fields = dict(
        site=SITE,
        po_number="PO-1",
        supplier_id=SUPPLIER,
        order_date=ORDER_DATE,
        cost_centre_id="CC",
        ship_to_location_id="LOC",
        lines=po_lines,
        total=sum((line.extended_amount for line in po_lines), Decimal(0)),
    )
    fields.update(changes)
    return PurchaseOrder(**fields)


def invoice(*lines: tuple, number: str = "INV-1", **changes) -> InvoiceSubmission:
    """Lines of (quantity, unit of measure, unit price[, item, PO line])."""
    invoice_lines = []
    for n, (quantity, uom, price, *rest) in enumerate(lines, start=1):
        item_id = rest[0] if rest else ITEM
        invoice_lines.append(
            InvoiceLine(
                line_number=n,
                quantity=Quantity(Decimal(quantity), uom),
                unit_price=Decimal(price),
                extended_amount=(Decimal(price) * Decimal(quantity)).quantize(Decimal("0.01")),
                item_id=item_id,
                po_line_number=rest[1] if len(rest) > 1 else None,
            )
        )
    subtotal = sum((line.extended_amount for line in invoice_lines), Decimal(0))
    fields = dict(
        site=SITE,
        supplier_id=SUPPLIER,
        invoice_number=number,
        invoice_date=date(2024, 3, 10),
        po_number="PO-1",
        lines=tuple(invoice_lines),
        subtotal=subtotal,
        total=subtotal,
    )
    fields.update(changes)
    return InvoiceSubmission(**fields)


def received(*parts: tuple[Decimal, str], line: int = 1, item_id: str = ITEM) -> list[Delivery]:
    return [
        Delivery(line, item_id, Quantity(Decimal(quantity), uom), f"R{n}")
        for n, (quantity, uom) in enumerate(parts, start=1)
    ]


def facts(
    the_invoice: InvoiceSubmission,
    the_order: PurchaseOrder | None,
    deliveries=(),
    items: tuple[Item, ...] = (),
    contracts: tuple[Contract, ...] = (),
    substitutions: tuple[Substitution, ...] = (),
    invoiced_before=None,
    **changes,
) -> MatchFacts:
    items = items or (item(),)
    by_id = {i.item_id: i for i in items}
    invoice_items = {
        line.line_number: by_id[line.item_id] for line in the_invoice.lines if line.item_id in by_id
    }
    return MatchFacts(
        invoice=the_invoice,
        order=the_order,
        invoice_items=invoice_items,
        items=by_id,
        contracts={
            i.item_id: [c for c in contracts if any(p.item_id == i.item_id for p in c.prices)]
            for i in items
        },
        substitutions={
            i.item_id: [s for s in substitutions if s.item_id == i.item_id] for i in items
        },
        deliveries=list(deliveries),
        invoiced_before=invoiced_before or {},
        **changes,
    )
