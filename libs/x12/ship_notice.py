"""X12 856 ship notice: shipment, then orders, then items with their lots, serials and expiry.

    BSN*00*ASN-5001*20250305*101500*0004~     purpose, ASN number, date, time, S-O-I
    HL*1**S*1~                                shipment
    TD5*****UPS Ground~                       carrier (TD505, or the SCAC in TD503)
    REF*2I*1Z999AA10123456784~                tracking number
    DTM*011*20250305*101500*UT~               shipped
    DTM*017*20250306*090000*UT~               expected delivery
    N1*SU**92*SUP-BSX~  N1*ST**92*LOC-DOCK~   supplier, ship-to (Sinew ids, "92")
    HL*2*1*O*1~  PRF*PO-1001~                 order
    HL*3*2*I*1~                               item
    LIN*1*IN*ITEM-1*VN*H7493*UK*00812345678901~   LIN01 the PO line
    SN1**2*BX~                                quantity shipped
    HL*4*3*I*0~                               one lot of the item above
    SN1**1*BX~  REF*LT*L2301~  REF*SE*S0001~  DTM*036*20270131~
    CTT*4~                                    number of HL levels

Pack and tare levels (HL03 P, T) between order and item are read through: their items belong
to the order above them. An item level with no lot levels under it may carry its lot itself
(REF*LT or LIN LT, REF*SE or LIN SN, DTM*036), as many suppliers send it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sinew.contracts.common import Quantity
from sinew.contracts.receiving import AdvanceShipNotice, ShippedItem, ShippedLot, ShippedOrder

from .envelope import Clock, Writer, read_transaction, write_moment
from .segments import (
    Cursor,
    Group,
    ProductIds,
    Segment,
    clock,
    code,
    count,
    day,
    line_number,
    one_of,
    parties,
    party_id,
    product_ids,
    real,
    text,
    unit,
)
from .validation import checked

KNOWN = frozenset({"BSN", "DTM", "HL", "LIN", "SN1", "PRF", "TD5", "REF", "N1", "CTT"})
LEVEL_BODY = (
    ("LIN", 1),
    ("SN1", 1),
    ("PRF", 1),
    ("TD5", 12),
    ("REF", None),
    ("DTM", None),
)
LEVELS = {"S": "shipment", "O": "order", "T": "tare", "P": "pack", "I": "item"}
# Which level may hang under which; an I under an I is a lot of that item.
PARENTS = {"S": set(), "O": {"S"}, "T": {"O"}, "P": {"O", "T"}, "I": {"O", "T", "P", "I"}}
SHIPPED, EXPECTED, EXPIRY = "011", "017", "036"


@dataclass(eq=False)
class _Level:
    hl: Segment
    number: str
    kind: str
    parent: _Level | None
    body: Group
    names: dict[str, Segment]
    children: list[_Level] = field(default_factory=list)

    def label(self) -> str:
        return f"HL {self.number} ({LEVELS[self.kind]})"

    def refuse(self, *segment_ids: str) -> None:
        for segment_id in segment_ids:
            found = self.body.all(segment_id)
            if found:
                raise found[0].error(f"{segment_id} has no place in {self.label()}")


def write_856(
    asn: AdvanceShipNotice,
    *,
    sender_id: str,
    receiver_id: str,
    control_number: int,
    created_at: datetime | None = None,
) -> bytes:
    """``created_at`` (BSN03-04, ISA09, GS04) defaults to the shipping time."""
    created = created_at or asn.shipped_at
    writer = Writer("856")
    writer.add("BSN", "00", asn.asn_number, created.astimezone(UTC).date(), Clock(created), "0004")
    numbers = iter(range(1, 1_000_000))
    shipment = next(numbers)
    writer.add("HL", shipment, None, "S", 1 if asn.orders else 0)
    if asn.carrier is not None:
        writer.add("TD5", None, None, None, None, asn.carrier)
    if asn.tracking_number is not None:
        writer.add("REF", "2I", asn.tracking_number)
    write_moment(writer, SHIPPED, asn.shipped_at)
    if asn.expected_at is not None:
        write_moment(writer, EXPECTED, asn.expected_at)
    writer.add("N1", "SU", None, "92", asn.supplier_id)
    if asn.ship_to_location_id is not None:
        writer.add("N1", "ST", None, "92", asn.ship_to_location_id)
    if not asn.orders:
        raise ValueError(f"ASN {asn.asn_number} ships no orders")
    for order in asn.orders:
        order_level = next(numbers)
        writer.add("HL", order_level, shipment, "O", 1 if order.items else 0)
        writer.add("PRF", order.po_number)
        if not order.items:
            raise ValueError(f"ASN {asn.asn_number} ships nothing on PO {order.po_number}")
        for item in order.items:
            item_level = next(numbers)
            writer.add("HL", item_level, order_level, "I", 1 if item.lots else 0)
            ids = _ids(item)
            if not ids:
                raise ValueError(
                    f"ASN {asn.asn_number}, PO {order.po_number}: an item needs an item id, "
                    "supplier part or GTIN (LIN02-LIN03)"
                )
            writer.add("LIN", item.po_line_number, *ids)
            writer.add("SN1", None, item.quantity.value, item.quantity.uom)
            for lot in item.lots:
                writer.add("HL", next(numbers), item_level, "I", 0)
                writer.add("SN1", None, lot.quantity.value, lot.quantity.uom)
                if lot.lot is not None:
                    writer.add("REF", "LT", lot.lot)
                for serial in lot.serials:
                    writer.add("REF", "SE", serial)
                if lot.expiry is not None:
                    writer.add("DTM", EXPIRY, lot.expiry)
    writer.add("CTT", sum(1 for segment_id, _ in writer.segments if segment_id == "HL"))
    return writer.interchange(
        sender_id=sender_id,
        receiver_id=receiver_id,
        control_number=control_number,
        created_at=created,
    )


def _ids(item: ShippedItem) -> list[str]:
    ids = []
    if item.item_id is not None:
        ids += ["IN", item.item_id]
    if item.supplier_part is not None:
        ids += ["VN", item.supplier_part]
    if item.gtin is not None:
        ids += [{12: "UP", 13: "EN"}.get(len(item.gtin), "UK"), item.gtin]
    return ids


def parse_856(data: bytes, site: str) -> AdvanceShipNotice:
    transaction = read_transaction(data, "856")
    cursor = transaction.cursor(KNOWN)
    bsn = cursor.take("BSN", "after ST")
    text(bsn, 1, required=True)
    asn_number = code(bsn, 2, required=True)
    day(bsn, 3, required=True)
    clock(bsn, 4, required=True)
    heading = cursor.group("heading", (("DTM", None),))
    levels = _levels(cursor)
    ctt = cursor.optional("CTT")
    cursor.finish("the last HL loop" if ctt is None else "CTT")

    shipment = levels[0]
    shipment.refuse("LIN", "SN1", "PRF")
    shipped_at = shipment.body.moment(SHIPPED) or heading.moment(SHIPPED)
    if shipped_at is None:
        raise shipment.hl.error(
            "expected DTM*011 (shipped) in the shipment level or the heading, found none"
        )
    # the first routing step that names its carrier: by name (TD505), else by SCAC (TD503)
    carriers = [text(td5, 5) or code(td5, 3) for td5 in shipment.body.all("TD5")]
    carrier = next((name for name in carriers if name), None)
    orders = []
    for order in shipment.children:
        if order.kind != "O":
            raise order.hl.error(f"{order.label()} cannot hang under the shipment")
        orders.append(_order(order))
    if not orders:
        raise shipment.hl.error("the shipment holds no order level (HL03 O)")
    if ctt is not None:
        stated = count(ctt, 1, required=True)
        items = sum(1 for level in levels if level.body.one("LIN") is not None)
        if stated not in (len(levels), items):
            raise ctt.error(
                f"CTT01 says {stated}, the ship notice has {len(levels)} HL levels and "
                f"{items} items",
                1,
            )
    return checked(
        AdvanceShipNotice(
            site=site,
            asn_number=asn_number,
            supplier_id=party_id(shipment.names.get("SU")) or transaction.sender_id,
            orders=tuple(orders),
            shipped_at=shipped_at,
            expected_at=shipment.body.moment(EXPECTED) or heading.moment(EXPECTED),
            ship_to_location_id=party_id(shipment.names.get("ST")),
            carrier=carrier,
            tracking_number=shipment.body.reference("2I"),
        )
    )


def _levels(cursor: Cursor) -> list[_Level]:
    """The HL tree: each HL names its parent, which must be a level still open above it."""
    levels: list[_Level] = []
    path: list[_Level] = []
    while cursor.at("HL") or not levels:
        hl = cursor.take("HL", "after the heading: a ship notice starts with its shipment level")
        body = cursor.group("HL loop", LEVEL_BODY)
        names = parties(cursor, (("REF", None),))
        expected = str(len(levels) + 1)
        if hl.get(1) != expected:
            raise hl.error(
                f"HL01 must be {expected}: levels are numbered 1, 2, 3 ... in order, "
                f"found {hl.get(1)!r}",
                1,
            )
        kind = one_of(hl, 3, {level: level for level in LEVELS}, required=True)
        assert kind is not None
        parent_number = hl.get(2)
        while path and path[-1].number != parent_number:
            path.pop()
        parent = path[-1] if path else None
        if parent_number and parent is None:
            raise hl.error(
                f"HL02 says parent {parent_number!r}, which is not a level above this one", 2
            )
        if parent is None and levels:
            raise hl.error("HL02 is required: only the shipment level has no parent", 2)
        if parent is None and kind != "S":
            raise hl.error(f"the first level must be the shipment (HL03 S), found {kind}", 3)
        if parent is not None and parent.kind not in PARENTS[kind]:
            raise hl.error(f"HL03 {kind} ({LEVELS[kind]}) cannot hang under {parent.label()}", 2)
        if (
            kind == "I"
            and parent is not None
            and parent.kind == "I"
            and parent.parent
            and (parent.parent.kind == "I")
        ):
            raise hl.error(f"{parent.label()} is already a lot; a lot has no levels under it", 2)
        level = _Level(hl, expected, kind, parent, body, names)
        if parent is not None:
            parent.children.append(level)
        levels.append(level)
        path.append(level)
    for level in levels:
        flag = level.hl.get(4)
        if flag and flag != ("1" if level.children else "0"):
            raise level.hl.error(
                f"HL04 says {flag!r}, but {level.label()} has "
                f"{len(level.children) or 'no'} levels under it",
                4,
            )
    return levels


def _order(level: _Level) -> ShippedOrder:
    level.refuse("LIN", "SN1")
    prf = level.body.one("PRF")
    if prf is None:
        raise level.hl.error(f"expected PRF (purchase order) in {level.label()}, found none")
    items = [_item(item) for item in _items_under(level)]
    if not items:
        raise level.hl.error(f"{level.label()} holds no items")
    return ShippedOrder(po_number=code(prf, 1, required=True), items=tuple(items))


def _items_under(level: _Level) -> list[_Level]:
    items = []
    for child in level.children:
        if child.kind == "I":
            items.append(child)
        else:
            child.refuse("LIN", "SN1", "PRF")
            items += _items_under(child)
    return items


def _item(level: _Level) -> ShippedItem:
    level.refuse("PRF")
    lin = level.body.one("LIN")
    if lin is None:
        raise level.hl.error(f"expected LIN (the item) in {level.label()}, found none")
    if not lin.get(2):
        raise lin.error("LIN02 is required: an item needs at least one product id", 2)
    ids = product_ids(lin, 2)
    po_line = line_number(lin, 1)
    named_line = ids.line_number("po_line")
    if po_line is not None and named_line is not None and po_line != named_line:
        raise lin.error(f"LIN01 says PO line {po_line}, the PL id says {named_line}", 1)
    quantity = _quantity(level)
    own_lot = _lot(level, ids, quantity)
    lots = [_lot_level(child) for child in level.children]
    if lots and own_lot is not None:
        raise level.hl.error(
            f"{level.label()} gives a lot, serial or expiry and also has lot levels under it"
        )
    return ShippedItem(
        quantity=quantity,
        po_line_number=po_line or named_line,
        item_id=ids.code("item"),
        supplier_part=ids.code("part"),
        gtin=ids.gtin(),
        lots=tuple(lots) if lots else (own_lot,) if own_lot else (),
    )


def _lot_level(level: _Level) -> ShippedLot:
    level.refuse("PRF")
    lin = level.body.one("LIN")
    ids = None
    if lin is not None:
        ids = product_ids(lin, 2)
        if set(ids.positions) - {"lot", "serial"}:
            raise lin.error(
                f"a lot level ({level.label()}) may name only its lot (LT) and serial (SN); "
                "the item level above it names the item"
            )
    quantity = _quantity(level)
    return _lot(level, ids, quantity) or ShippedLot(quantity=quantity)


def _quantity(level: _Level) -> Quantity:
    sn1 = level.body.one("SN1")
    if sn1 is None:
        raise level.hl.error(f"expected SN1 (quantity shipped) in {level.label()}, found none")
    return Quantity(real(sn1, 2, required=True), unit(sn1, 3))


def _lot(level: _Level, ids: ProductIds | None, quantity: Quantity) -> ShippedLot | None:
    lot = level.body.reference("LT")
    named_lot = ids.code("lot") if ids else None
    if lot is not None and named_lot is not None and lot != named_lot:
        ref = level.body.one("REF", "LT")
        assert ref is not None
        raise ref.error(f"REF*LT says lot {lot!r}, the LIN says {named_lot!r}", 2)
    serials = [code(ref, 2, required=True) for ref in level.body.all("REF", "SE")]
    named_serial = ids.code("serial") if ids else None
    if named_serial is not None and named_serial not in serials:
        serials.insert(0, named_serial)
    expiry = level.body.date(EXPIRY)
    lot = lot or named_lot
    if lot is None and not serials and expiry is None:
        return None
    return ShippedLot(quantity=quantity, lot=lot, expiry=expiry, serials=tuple(serials))
