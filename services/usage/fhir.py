"""FHIR R4 in, through fhir.resources' R4B models: a Procedure that names the devices it used, or
a SupplyDelivery of one item to a patient.

Procedure (status completed; entered-in-error voids it):
  source_usage_id  identifier[0].value (else id), then "/<n>" per device, focalDevice first
  case_id          encounter (identifier, or the id of an Encounter/<id> reference)
  physician_id     performer[0].actor;  location_id  location;  used_at  performed[x]
  procedure        code.coding[0].code, code.text or coding display
  devices          focalDevice[].manipulated and usedReference[]: a contained Device (#id) with
                   udiCarrier (carrierHRF = the whole UDI, else deviceIdentifier), lotNumber,
                   serialNumber, expirationDate, identifier (the item master id); usedCode[]
                   codings in the GS1 GTIN or the item-id system. One unit each.
SupplyDelivery (status completed; entered-in-error voids it):
  source_usage_id  identifier[0].value (else id);  used_at  occurrence[x]
  patient, destination (location), receiver[0] (the physician), suppliedItem (quantity with its
  unit code, and itemReference to a contained Device or itemCodeableConcept), and the case and
  procedure in the extensions CASE_EXTENSION (valueString or valueIdentifier) and
  PROCEDURE_EXTENSION (valueCodeableConcept).
The patient is subject / patient: a contained Patient (identifier[0] is the MRN, its name), a
reference's identifier, or the id of a Patient/<id> reference.

Validation errors name the element's path and the rule, never the value it held.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.supplydelivery import SupplyDelivery
from pydantic import ValidationError

from sinew.common.errors import Invalid

from .documents import ClinicalDocument, usage, void

CASE_EXTENSION = "urn:sinew:fhir:usage-case"
PROCEDURE_EXTENSION = "urn:sinew:fhir:usage-procedure"
ITEM_SYSTEM = "urn:sinew:item"
GTIN_SYSTEMS = {"https://www.gs1.org/gtin", "urn:oid:1.3.160", "http://gs1.org/gtin"}
RESOURCES = {"Procedure": Procedure, "SupplyDelivery": SupplyDelivery}
VOIDED = {"entered-in-error"}


def read_fhir(data: bytes, headers: dict[str, str], site: str) -> ClinicalDocument:
    try:
        resource_type = msgspec.json.decode(data, type=dict[str, Any]).get("resourceType")
    except msgspec.ValidationError:
        raise Invalid("FHIR: the document is not a JSON object", "malformed") from None
    except msgspec.DecodeError as error:
        raise Invalid(f"FHIR: malformed JSON: {error}", "malformed") from None
    model = RESOURCES.get(resource_type)
    if model is None:
        raise Invalid(
            f"FHIR: resourceType {resource_type!r} is not a usage; send Procedure or "
            "SupplyDelivery",
            "malformed",
        )
    try:
        resource = model.model_validate_json(data)
    except ValidationError as error:
        raise Invalid(f"FHIR R4B {resource_type}: {_describe(error)}") from None
    if resource_type == "Procedure":
        usages, voids = _procedure(resource, site)
    else:
        usages, voids = _supply_delivery(resource, site)
    return ClinicalDocument(
        site=site, source_format="fhir", usages=tuple(usages), voids=tuple(voids)
    )


def _describe(error: ValidationError) -> str:
    """pydantic's errors by path and message only: its `input_value` may be a patient's name."""
    problems = [
        f"{'.'.join(str(p) for p in e['loc']) or '(resource)'}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    ]
    shown = "; ".join(problems[:5])
    return shown + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")


# -- Procedure --------------------------------------------------------------------------------


def _procedure(procedure: Procedure, site: str) -> tuple[list, list]:
    contained = _contained(procedure)
    procedure_id = _identifier(procedure)
    case_id = _reference_id(procedure.encounter, "Encounter")
    if not case_id:
        raise Invalid("Procedure.encounter: the case (encounter) is required")
    devices = [
        *(f.manipulated for f in procedure.focalDevice or []),
        *(procedure.usedReference or []),
    ]
    codes = list(procedure.usedCode or [])
    if not devices and not codes:
        raise Invalid("Procedure: no focalDevice, usedReference or usedCode names what was used")
    line_ids = [f"{procedure_id}/{n}" for n in range(1, len(devices) + len(codes) + 1)]
    if procedure.status in VOIDED:
        voided_at = _performed(procedure, required=False) or datetime.now(UTC)
        return [], [
            void(
                {
                    "site": site,
                    "source_usage_id": line_id,
                    "case_id": case_id,
                    "voided_at": voided_at,
                    "reason": "FHIR Procedure entered-in-error",
                },
                f"Procedure line {line_id}",
            )
            for line_id in line_ids
        ]
    if procedure.status != "completed":
        raise Invalid(f"Procedure.status {procedure.status} is not a usage; send completed")
    mrn, name = _patient(procedure.subject, contained, "Procedure.subject")
    coding = (procedure.code.coding or [None])[0] if procedure.code else None
    common = {
        "site": site,
        "case_id": case_id,
        "procedure_code": coding.code if coding else None,
        "procedure_name": (procedure.code.text if procedure.code else None)
        or (coding.display if coding else None),
        "physician_id": _reference_id(
            procedure.performer[0].actor if procedure.performer else None, "Practitioner"
        ),
        "location_id": _reference_id(procedure.location, "Location"),
        "mrn": mrn,
        "patient_name": name,
        "used_at": _performed(procedure, required=True),
        "quantity": {"value": Decimal(1), "uom": "EA"},
    }
    for field, element in (
        ("procedure_code", "Procedure.code"),
        ("physician_id", "Procedure.performer.actor"),
        ("location_id", "Procedure.location"),
    ):
        if not common[field]:
            raise Invalid(f"{element}: required for a usage")
    usages = []
    for line_id, device in zip(line_ids, devices, strict=False):
        where = f"Procedure device {line_id}"
        fields = _device(_resolve(device, contained, where), where)
        usages.append(usage({**common, **fields, "source_usage_id": line_id}, where))
    for line_id, code in zip(line_ids[len(devices) :], codes, strict=True):
        where = f"Procedure usedCode {line_id}"
        usages.append(usage({**common, **_coded(code, where), "source_usage_id": line_id}, where))
    return usages, []


def _performed(procedure: Procedure, *, required: bool) -> datetime | None:
    moment = procedure.performedDateTime or (
        procedure.performedPeriod.start if procedure.performedPeriod else None
    )
    if moment is None:
        if required:
            raise Invalid("Procedure.performed[x]: performedDateTime or performedPeriod.start")
        return None
    return _utc(moment, "Procedure.performed[x]")


# -- SupplyDelivery ---------------------------------------------------------------------------


def _supply_delivery(delivery: SupplyDelivery, site: str) -> tuple[list, list]:
    contained = _contained(delivery)
    line_id = _identifier(delivery)
    case_id = _extension(delivery, CASE_EXTENSION)
    if not case_id:
        raise Invalid(f"SupplyDelivery.extension({CASE_EXTENSION}): the case is required")
    moment = delivery.occurrenceDateTime or (
        delivery.occurrencePeriod.start if delivery.occurrencePeriod else None
    )
    if delivery.status in VOIDED:
        voided_at = _utc(moment, "SupplyDelivery.occurrence[x]") if moment else datetime.now(UTC)
        return [], [
            void(
                {
                    "site": site,
                    "source_usage_id": line_id,
                    "case_id": case_id,
                    "voided_at": voided_at,
                    "reason": "FHIR SupplyDelivery entered-in-error",
                },
                "SupplyDelivery",
            )
        ]
    if delivery.status != "completed":
        raise Invalid(f"SupplyDelivery.status {delivery.status} is not a usage; send completed")
    if moment is None:
        raise Invalid("SupplyDelivery.occurrence[x]: when the item was used is required")
    if delivery.patient is None:
        raise Invalid("SupplyDelivery.patient: the patient is required for a usage")
    mrn, name = _patient(delivery.patient, contained, "SupplyDelivery.patient")
    procedure = _extension(delivery, PROCEDURE_EXTENSION, coded=True)
    supplied = delivery.suppliedItem
    if supplied is None:
        raise Invalid("SupplyDelivery.suppliedItem: what was used is required")
    if supplied.itemReference is not None:
        item = _device(
            _resolve(supplied.itemReference, contained, "SupplyDelivery.suppliedItem"),
            "SupplyDelivery.suppliedItem",
        )
    elif supplied.itemCodeableConcept is not None:
        item = _coded(supplied.itemCodeableConcept, "SupplyDelivery.suppliedItem")
    else:
        raise Invalid("SupplyDelivery.suppliedItem: itemReference or itemCodeableConcept")
    quantity = supplied.quantity
    fields = {
        "site": site,
        "source_usage_id": line_id,
        "case_id": case_id,
        "procedure_code": procedure[0] if procedure else None,
        "procedure_name": procedure[1] if procedure else None,
        "physician_id": _reference_id(
            delivery.receiver[0] if delivery.receiver else None, "Practitioner"
        ),
        "location_id": _reference_id(delivery.destination, "Location"),
        "mrn": mrn,
        "patient_name": name,
        "used_at": _utc(moment, "SupplyDelivery.occurrence[x]"),
        "quantity": {
            "value": quantity.value if quantity and quantity.value is not None else Decimal(1),
            "uom": (quantity.code or quantity.unit or "EA") if quantity else "EA",
        },
        **item,
    }
    for field, element in (
        ("procedure_code", f"SupplyDelivery.extension({PROCEDURE_EXTENSION})"),
        ("physician_id", "SupplyDelivery.receiver"),
        ("location_id", "SupplyDelivery.destination"),
    ):
        if not fields[field]:
            raise Invalid(f"{element}: required for a usage")
    return [usage(fields, "SupplyDelivery")], []


# -- shared pieces ----------------------------------------------------------------------------


def _contained(resource) -> dict[str, Any]:
    return {r.id: r for r in resource.contained or [] if r.id}


def _identifier(resource) -> str:
    identifier = next((i.value for i in resource.identifier or [] if i.value), None)
    found = identifier or resource.id
    if not found:
        name = resource.get_resource_type()
        raise Invalid(f"{name}.identifier: an identifier (or id) is required to void it later")
    return found


def _reference_id(reference, resource_type: str) -> str | None:
    """The business id a reference names: its identifier, else the id in "<Type>/<id>"."""
    if reference is None:
        return None
    if reference.identifier is not None and reference.identifier.value:
        return reference.identifier.value
    target = reference.reference or ""
    prefix = f"{resource_type}/"
    if target.startswith(prefix):
        return target[len(prefix) :].split("/", 1)[0]
    return None


def _resolve(reference, contained: dict[str, Any], where: str):
    target = (reference.reference or "") if reference is not None else ""
    if target.startswith("#") and target[1:] in contained:
        found = contained[target[1:]]
        if found.get_resource_type() != "Device":
            raise Invalid(f"{where}: {target} is a {found.get_resource_type()}, not a Device")
        return found
    if reference is not None and reference.identifier is not None and reference.identifier.value:
        return reference.identifier  # an item named by identifier alone
    raise Invalid(f"{where}: reference a contained Device (#id) or give an identifier")


def _device(device, where: str) -> dict:
    if device.get_resource_type() == "Identifier":
        return _system_code(device.system, device.value, where)
    fields: dict[str, Any] = {}
    carrier = (device.udiCarrier or [None])[0]
    if carrier is not None and carrier.carrierHRF:
        fields["udi"] = carrier.carrierHRF
    elif carrier is not None and carrier.deviceIdentifier:
        fields["gtin"] = carrier.deviceIdentifier
    item_id = next((i.value for i in device.identifier or [] if i.value), None)
    if item_id:
        fields["item_id"] = item_id
    if device.lotNumber:
        fields["lot"] = device.lotNumber
    if device.serialNumber:
        fields["serial"] = device.serialNumber
    if device.expirationDate:
        expiry = device.expirationDate  # a dateTime, which FHIR lets be a date alone
        fields["expiry"] = expiry.date() if isinstance(expiry, datetime) else expiry
    if not (fields.get("udi") or fields.get("gtin") or fields.get("item_id")):
        raise Invalid(f"{where}: the Device has no udiCarrier and no identifier")
    return fields


def _coded(concept, where: str) -> dict:
    for coding in concept.coding or []:
        if coding.code and (coding.system in GTIN_SYSTEMS or coding.system == ITEM_SYSTEM):
            return _system_code(coding.system, coding.code, where)
    raise Invalid(f"{where}: no coding in {ITEM_SYSTEM} or a GS1 GTIN system")


def _system_code(system: str | None, code: str | None, where: str) -> dict:
    if not code:
        raise Invalid(f"{where}: the identifier has no value")
    return {"gtin": code} if system in GTIN_SYSTEMS else {"item_id": code}


def _patient(reference, contained: dict[str, Any], where: str) -> tuple[str, str | None]:
    target = (reference.reference or "") if reference is not None else ""
    if target.startswith("#") and target[1:] in contained:
        patient = contained[target[1:]]
        mrn = next((i.value for i in patient.identifier or [] if i.value), None)
        name = next(iter(patient.name or []), None)
        text = None
        if name is not None:
            text = name.text or " ".join([*(name.given or []), name.family or ""]).strip()
        if not mrn:
            raise Invalid(f"{where}: the contained Patient has no identifier (MRN)")
        return mrn, (text or None)
    mrn = _reference_id(reference, "Patient")
    if not mrn:
        raise Invalid(f"{where}: name the patient by identifier or a contained Patient")
    return mrn, None


def _extension(resource, url: str, *, coded: bool = False):
    for extension in resource.extension or []:
        if extension.url != url:
            continue
        if coded and extension.valueCodeableConcept is not None:
            concept = extension.valueCodeableConcept
            coding = (concept.coding or [None])[0]
            code = coding.code if coding else None
            return (code, concept.text or (coding.display if coding else None)) if code else None
        if extension.valueString:
            return extension.valueString
        if extension.valueIdentifier is not None and extension.valueIdentifier.value:
            return extension.valueIdentifier.value
    return None


def _utc(moment, where: str) -> datetime:
    if not isinstance(moment, datetime):
        raise Invalid(f"{where}: give a date and time, not a date alone")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
