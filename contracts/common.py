"""Value types every contract shares: money, quantities, codes and UTC times."""

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

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


# msgspec reads "NaN", "Infinity" and "sNaN" as a Decimal and cannot bound one; a NaN price would
# compare false with every tolerance. Only bytes that could spell one are walked.
_COULD_BE_NON_FINITE = re.compile(rb"(?i)nan|inf")


def require_finite(data: bytes, message: Any) -> None:
    """Raise msgspec.ValidationError, with the path, for a decimal in `message` that is not a
    number (NaN) or is infinite."""
    if not _COULD_BE_NON_FINITE.search(data):
        return
    found = _non_finite(message, "$")
    if found:
        path, value = found
        raise msgspec.ValidationError(f"Expected a finite decimal, got `{value}` - at `{path}`")


def _non_finite(value: Any, path: str) -> tuple[str, Decimal] | None:
    if isinstance(value, Decimal):
        return None if value.is_finite() else (path, value)
    if isinstance(value, msgspec.Struct):
        children = ((f".{name}", getattr(value, name)) for name in value.__struct_fields__)
    elif isinstance(value, list | tuple):
        children = ((f"[{n}]", item) for n, item in enumerate(value))
    elif isinstance(value, dict):
        children = ((f"[{key!r}]", item) for key, item in value.items())
    else:
        return None
    for step, child in children:
        if found := _non_finite(child, path + step):
            return found
    return None
