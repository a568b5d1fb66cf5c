"""Value types every contract shares: money, quantities, codes and UTC times."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

# A site code is a subject token, so it may hold neither dots nor wildcards.
SiteCode = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]{0,31}$", description="Site code")]
Code = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\s].*$", description="Business key"),
]
Text = Annotated[str, msgspec.Meta(max_length=1000)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217")]
# Unit of measure codes follow UN/ECE recommendation 20 (EA each, BX box, CA case, ...).
UomCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,8}$", description="UN/ECE rec. 20")]
# Money and quantities are decimals carried as JSON strings, never binary floats.
Amount = Annotated[Decimal, msgspec.Meta(description='Decimal amount as a string, e.g. "1200.00"')]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 time with offset")]


class Money(msgspec.Struct, frozen=True):
    amount: Amount
    currency: CurrencyCode = "USD"


class Quantity(msgspec.Struct, frozen=True):
    value: Amount
    uom: UomCode
