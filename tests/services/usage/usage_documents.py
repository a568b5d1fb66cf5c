"""Usage documents as the EHR sends them: canonical JSON, HL7 v2 DFT^P03 and FHIR R4, built from
a few keywords so each test says only what matters to it. Patient identifiers are synthetic."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec

from sinew.contracts.common import Quantity
from sinew.contracts.usage import UsageSubmitted, UsageVoidSubmitted

MRN = "MRN-SYNTH-7731"
PATIENT_FAMILY, PATIENT_GIVEN = "ZZTEST", "PATIENT"
PATIENT_NAME = f"{PATIENT_FAMILY}^{PATIENT_GIVEN}"
USED_AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
FUTURE = date(2031, 1, 31)
_encode = msgspec.json.Encoder(decimal_format="string").encode


def json_usage(site: str, source_usage_id: str, **fields) -> bytes:
    values = dict(
        site=site,
        source_usage_id=source_usage_id,
        case_id="CASE-1",
        procedure_code="92928",
        procedure_name="PCI with stent",
        physician_id="DR-7",
        location_id="CATH-LAB-1",
        mrn=MRN,
        patient_name=f"{PATIENT_GIVEN} {PATIENT_FAMILY}",
        quantity=Quantity(value=Decimal(1), uom="EA"),
        used_at=USED_AT,
    )
    values.update(fields)
    return _encode(UsageSubmitted(**values))


def json_void(site: str, source_usage_id: str, case_id: str = "CASE-1", **fields) -> bytes:
    return _encode(
        UsageVoidSubmitted(
            site=site,
            source_usage_id=source_usage_id,
            case_id=case_id,
            voided_at=fields.pop("voided_at", USED_AT),
            reason=fields.pop("reason", "documented on the wrong case"),
            **fields,
        )
    )


# -- HL7 v2 -----------------------------------------------------------------------------------


def segment(name: str, fields: dict[int, str]) -> str:
    return "|".join([name] + [fields.get(i, "") for i in range(1, max(fields) + 1)])


@dataclass
class Ft1:
    """One FT1 line and, when the device is given, the PRT that describes it."""

    transaction_id: str
    transaction_type: str = "CG"
    item_id: str = ""
    udi: str = ""
    device_identifier: str = ""
    lot: str = ""
    serial: str = ""
    expiry: str = ""
    quantity: str = "1"
    unit: str = ""
    location: str = "CATH-LAB-1"
    physician: str = "DR-7^Heart^Ann"
    procedure: str = "92928^PCI with stent^CPT4"
    used_at: str = "20240501093000+0000"


@dataclass
class Dft:
    control_id: str
    lines: list[Ft1] = field(default_factory=list)
    case_id: str = "CASE-1"
    mrn: str = MRN
    patient_name: str = PATIENT_NAME
    version: str = "2.8.2"
    accept_ack: str = ""
    application_ack: str = ""
    with_evn: bool = True
    message_type: str = "DFT^P03^DFT_P03"

    def encode(self) -> bytes:
        msh = (
            f"MSH|^~\\&|EPIC|NORTH-HOSP|SINEW|NORTH|20240501100000||{self.message_type}|"
            f"{self.control_id}|P|{self.version}|||{self.accept_ack}|{self.application_ack}"
        )
        segments = [msh]
        if self.with_evn:
            segments.append("EVN||20240501100000")
        segments.append(f"PID|1||{self.mrn}^^^NORTH^MR||{self.patient_name}")
        segments.append(
            segment("PV1", {1: "1", 2: "I", 3: "CATH-LAB-1", 19: f"{self.case_id}^^^NORTH^VN"})
        )
        for n, line in enumerate(self.lines, start=1):
            ft1 = {
                1: str(n),
                2: line.transaction_id,
                4: line.used_at,
                6: f"{line.transaction_type}^^HL70017",
                7: "278-1001^Implant charge",
                10: line.quantity,
                16: line.location,
                20: line.physician,
                25: line.procedure,
            }
            if line.item_id:
                ft1[34] = line.item_id
            if line.unit:
                ft1[43] = f"{line.quantity}^{line.unit}"
            segments.append(segment("FT1", ft1))
            device = {
                10: line.udi,
                16: line.device_identifier,
                18: line.expiry,
                19: line.lot,
                20: line.serial,
            }
            if any(device.values()):
                segments.append(
                    segment("PRT", {1: str(n), 2: "UC", 4: "AD^Device^HL70912", **device})
                )
        return "\r".join(segments).encode()


# -- FHIR R4 ----------------------------------------------------------------------------------


def fhir_device(
    device_id: str,
    *,
    udi: str | None = None,
    gtin: str | None = None,
    item_id: str | None = None,
    lot: str | None = None,
    serial: str | None = None,
    expiry: str | None = None,
) -> dict:
    device: dict = {"resourceType": "Device", "id": device_id}
    if udi:
        device["udiCarrier"] = [{"carrierHRF": udi}]
    elif gtin:
        device["udiCarrier"] = [{"deviceIdentifier": gtin}]
    if item_id:
        device["identifier"] = [{"system": "urn:sinew:item", "value": item_id}]
    if lot:
        device["lotNumber"] = lot
    if serial:
        device["serialNumber"] = serial
    if expiry:
        device["expirationDate"] = expiry
    return device


def fhir_patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": "pat",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": MRN}],
        "name": [{"family": PATIENT_FAMILY, "given": [PATIENT_GIVEN]}],
    }


def fhir_procedure(
    procedure_id: str, devices: list[dict], *, status: str = "completed", case_id: str = "CASE-1"
) -> bytes:
    return json.dumps(
        {
            "resourceType": "Procedure",
            "id": procedure_id,
            "identifier": [{"system": "urn:ehr:procedure", "value": procedure_id}],
            "status": status,
            "contained": [fhir_patient(), *devices],
            "subject": {"reference": "#pat"},
            "encounter": {"identifier": {"value": case_id}},
            "code": {
                "coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "92928"}],
                "text": "PCI with stent",
            },
            "performedDateTime": "2024-05-01T09:30:00Z",
            "performer": [{"actor": {"reference": "Practitioner/DR-7"}}],
            "location": {"reference": "Location/CATH-LAB-1"},
            "focalDevice": [{"manipulated": {"reference": f"#{d['id']}"}} for d in devices],
        }
    ).encode()


def fhir_supply_delivery(
    delivery_id: str,
    device: dict,
    *,
    status: str = "completed",
    case_id: str = "CASE-1",
    quantity: int = 1,
    unit: str = "EA",
) -> bytes:
    return json.dumps(
        {
            "resourceType": "SupplyDelivery",
            "id": delivery_id,
            "identifier": [{"value": delivery_id}],
            "status": status,
            "extension": [
                {"url": "urn:sinew:fhir:usage-case", "valueString": case_id},
                {
                    "url": "urn:sinew:fhir:usage-procedure",
                    "valueCodeableConcept": {"coding": [{"code": "92928"}], "text": "PCI"},
                },
            ],
            "contained": [fhir_patient(), device],
            "patient": {"reference": "#pat"},
            "suppliedItem": {
                "quantity": {"value": quantity, "code": unit},
                "itemReference": {"reference": f"#{device['id']}"},
            },
            "occurrenceDateTime": "2024-05-01T09:30:00Z",
            "receiver": [{"reference": "Practitioner/DR-7"}],
            "destination": {"reference": "Location/CATH-LAB-1"},
        }
    ).encode()
