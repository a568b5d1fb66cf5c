"""Clinical consumption: what was used in which case, its voids, exceptions and bill-only requests.

Patient identifiers reach Sinew only on the EHR's ingress subjects. The usage service swaps them
for a patient token (a keyed pseudonym) at once; no canonical event, and so no other service,
ever sees them.
"""

from datetime import date
from typing import Annotated, Literal

import msgspec

from .catalogue import FHIR_JSON, HL7V2, INGRESS, Channel
from .common import Code, Quantity, SiteCode, Text, UtcTime
from .items import Barcode, Gtin, Lot, Serial

PatientToken = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^pt-[A-Za-z0-9]{16,64}$",
        description=(
            "Surrogate for the patient (a keyed pseudonym of the MRN), issued only by the usage"
            " service"
        ),
    ),
]
UsageSourceFormat = Literal["json", "hl7v2", "fhir"]


class UsageSubmitted(msgspec.Struct, frozen=True, kw_only=True):
    """Procedure usage as the EHR sends it. Name the item by item_id, GTIN or the whole UDI
    barcode; the patient by MRN, which stays inside the usage service."""

    site: SiteCode
    source_usage_id: Code  # the EHR's id for this line, needed to void it later
    case_id: Code
    procedure_code: Code
    physician_id: Code
    location_id: Code
    mrn: Code
    quantity: Quantity
    used_at: UtcTime
    item_id: Code | None = None
    gtin: Gtin | None = None
    udi: Barcode | None = None
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None
    patient_name: Text | None = None
    procedure_name: Text | None = None
    # The item master decides; the EHR's own flag is kept to spot disagreements.
    bill_only: bool | None = None


class UsageVoidSubmitted(msgspec.Struct, frozen=True, kw_only=True):
    """The EHR withdraws a usage line it sent before (a correction is a void plus a new line)."""

    site: SiteCode
    source_usage_id: Code
    case_id: Code
    voided_at: UtcTime
    reason: Text | None = None


class ProcedureUsageRecorded(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    usage_id: Code
    source_usage_id: Code
    case_id: Code
    procedure_code: Code
    physician_id: Code
    location_id: Code
    item_id: Code
    quantity: Quantity
    base_quantity: Quantity  # converted through the item master
    used_at: UtcTime
    patient_token: PatientToken
    gtin: Gtin | None = None
    udi: Barcode | None = None
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None
    procedure_name: Text | None = None
    implant: bool = False
    consignment: bool = False
    # A bill-only usage is bought after the fact and stands in for the goods receipt.
    bill_only: bool = False
    supplier_id: Code | None = None
    contract_number: Code | None = None
    source_format: UsageSourceFormat
    recorded_at: UtcTime


class ProcedureUsageVoided(msgspec.Struct, frozen=True, kw_only=True):
    """Reverses a recorded usage; it repeats what consumers need to undo its effects."""

    site: SiteCode
    usage_id: Code
    source_usage_id: Code
    case_id: Code
    location_id: Code
    item_id: Code
    quantity: Quantity
    base_quantity: Quantity
    lot: Lot | None = None
    serial: Serial | None = None
    bill_only: bool = False
    reason: Text | None = None
    voided_at: UtcTime


UsageExceptionType = Literal[
    "UNKNOWN_ITEM",
    "UNKNOWN_LOCATION",
    "LOT_REQUIRED",
    "SERIAL_REQUIRED",
    "EXPIRED_LOT",
    "SERIAL_ALREADY_USED",
    "VOID_OF_UNKNOWN_USAGE",
]


class UsageExceptionRaised(msgspec.Struct, frozen=True, kw_only=True):
    """A usage Sinew could not take at face value. A held usage is applied by itself once the
    cause is gone (e.g. the item master catches up), and the exception clears."""

    site: SiteCode
    exception_id: Code
    type: UsageExceptionType
    explanation: Text
    held: bool
    source_usage_id: Code
    case_id: Code
    location_id: Code | None = None
    usage_id: Code | None = None  # when the usage was recorded despite the problem
    item_id: Code | None = None
    gtin: Gtin | None = None
    udi: Barcode | None = None
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None
    raised_at: UtcTime


class UsageExceptionCleared(msgspec.Struct, frozen=True, kw_only=True):
    site: SiteCode
    exception_id: Code
    type: UsageExceptionType
    source_usage_id: Code
    resolution: Literal["item_master_updated", "location_added", "voided", "dismissed"]
    cleared_by: Text
    usage_id: Code | None = None  # the held usage, now recorded
    reason: Text | None = None
    cleared_at: UtcTime


class BillOnlyRequested(msgspec.Struct, frozen=True, kw_only=True):
    """A consigned implant was used: procurement raises a bill-only PO at contract price."""

    site: SiteCode
    request_id: Code
    usage_id: Code
    case_id: Code
    procedure_code: Code
    physician_id: Code
    location_id: Code
    item_id: Code
    quantity: Quantity
    used_at: UtcTime
    lot: Lot | None = None
    serial: Serial | None = None
    expiry: date | None = None
    supplier_id: Code | None = None
    contract_number: Code | None = None
    requested_at: UtcTime


# fmt: off
CHANNELS: list[Channel] = [
    Channel(INGRESS, "usage", "recorded", 1, UsageSubmitted, "ehr", ("usage",),
            "Procedure usage from the EHR in JSON (may carry the MRN; only usage reads it)"),
    Channel(INGRESS, "usage", "voided", 1, UsageVoidSubmitted, "ehr", ("usage",),
            "The EHR withdraws a usage line it sent before"),
    Channel(INGRESS, "usage-hl7", "received", 1, None, "ehr", ("usage",),
            "Procedure usage as HL7 v2 DFT^P03 (FT1, PRT with UDI, lot, serial, expiry)",
            content_type=HL7V2),
    Channel(INGRESS, "usage-fhir", "received", 1, None, "ehr", ("usage",),
            "Procedure usage as a FHIR R4 Procedure or SupplyDelivery", content_type=FHIR_JSON),
    Channel("usage", "procedure-usage", "recorded", 1, ProcedureUsageRecorded, "usage",
            ("replenishment", "matching", "observability"),
            "An item used in a case: item, lot, serial, quantity, location, patient token"),
    Channel("usage", "procedure-usage", "voided", 1, ProcedureUsageVoided, "usage",
            ("replenishment", "matching", "procurement", "observability"),
            "A recorded usage withdrawn; its effects are reversed"),
    Channel("usage", "exception", "raised", 1, UsageExceptionRaised, "usage",
            ("observability",), "A usage problem such as UNKNOWN_ITEM, possibly held"),
    Channel("usage", "exception", "cleared", 1, UsageExceptionCleared, "usage",
            ("observability",), "A usage exception cleared, by itself or by a person"),
    Channel("usage", "bill-only", "requested", 1, BillOnlyRequested, "usage",
            ("procurement", "observability"),
            "A consigned implant used in a case, to be bought after the fact"),
]
# fmt: on
