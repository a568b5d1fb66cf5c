"""X12 documents procurement exchanges with suppliers: the 855 it reads, the 850 it writes.
The segment work is sinew.x12's; this module only fits it to the runtime."""

from __future__ import annotations

import msgspec

from sinew.common.errors import Invalid
from sinew.contracts.procurement import PurchaseOrder, PurchaseOrderAcknowledgement

ACKNOWLEDGEMENT_X12 = "ingress.po-acknowledgement-x12.received.v1"
PURCHASE_ORDER_X12 = "procurement.purchase-order-x12.sent.v1"


class X12Acknowledgement(PurchaseOrderAcknowledgement, frozen=True, kw_only=True):
    """An acknowledgement that arrived as an 855: the same answer, remembered as X12."""


def acknowledgement_from_855(data: bytes, headers: dict[str, str], site: str):
    try:
        from sinew.x12 import X12Error, parse_855
    except ImportError:
        raise Invalid(
            "this build has no X12 855 reader (sinew.x12.parse_855); replay once it has one"
        ) from None
    try:
        acknowledgement = parse_855(data, site)
    except X12Error as error:
        raise Invalid(str(error), "malformed") from None
    return X12Acknowledgement(**msgspec.structs.asdict(acknowledgement))


def interchange_id(site: str) -> str:
    """The hospital's ISA sender id at this site (15 characters at most)."""
    return ("SINEW" + site.upper().replace("-", ""))[:15]


def purchase_order_850(po: PurchaseOrder, *, receiver_id: str, control_number: int) -> bytes | None:
    """The 850 for this order, or None in a build without an X12 writer."""
    try:
        from sinew.x12 import write_850
    except ImportError:
        return None
    return write_850(
        po,
        sender_id=interchange_id(po.site),
        receiver_id=receiver_id,
        control_number=control_number,
    )
