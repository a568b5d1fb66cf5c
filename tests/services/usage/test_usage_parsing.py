"""HL7 v2 DFT^P03 and FHIR R4 documents read into canonical usage lines, and invalid ones refused
with the validator's reason (never quoting the patient)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import scenario_data as scenario
from hl7apy.parser import parse_message
from usage_documents import (
    MRN,
    PATIENT_FAMILY,
    Dft,
    Ft1,
    fhir_device,
    fhir_procedure,
    fhir_supply_delivery,
)

from sinew.common.errors import Invalid
from sinew.services.usage.documents import AckRequest
from sinew.services.usage.fhir import read_fhir
from sinew.services.usage.hl7 import ack_request_from_raw, build_ack, read_dft_p03

SITE = "north"
REPLY = {"sinew-reply-to": "_INBOX_ehr-north.x1"}


def refused(reader, data: bytes) -> Invalid:
    with pytest.raises(Invalid) as caught:
        reader(data, {}, SITE)
    return caught.value


# -- HL7 --------------------------------------------------------------------------------------


def test_a_dft_p03_with_prt_device_becomes_usage_lines_and_voids():
    udi = scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S1")
    message = Dft(
        "CTRL-1",
        [
            Ft1("TX-1", udi=udi, expiry="20310131", used_at="20240501113000+0200"),
            Ft1("TX-2", item_id=scenario.GUIDEWIRE, lot="G1", quantity="2", unit="BX"),
            Ft1("TX-0", transaction_type="CD", item_id=scenario.GUIDEWIRE),
        ],
        application_ack="AL",
    )
    document = read_dft_p03(message.encode(), REPLY, SITE)
    first, second = document.usages
    assert document.source_format == "hl7v2"
    assert (first.source_usage_id, first.udi, first.expiry) == ("TX-1", udi, date(2031, 1, 31))
    assert first.used_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert (first.case_id, first.location_id, first.physician_id) == (
        "CASE-1",
        "CATH-LAB-1",
        "DR-7",
    )
    assert (first.procedure_code, first.procedure_name) == ("92928", "PCI with stent")
    assert first.mrn == MRN and first.patient_name == "ZZTEST^PATIENT"
    assert (second.item_id, second.lot) == (scenario.GUIDEWIRE, "G1")
    assert (second.quantity.value, second.quantity.uom) == (Decimal(2), "BX")
    (void,) = document.voids
    assert (void.source_usage_id, void.case_id) == ("TX-0", "CASE-1")
    assert document.ack == AckRequest(
        reply_to=REPLY["sinew-reply-to"],
        control_id="CTRL-1",
        version="2.8.2",
        sending_application="EPIC",
        sending_facility="NORTH-HOSP",
        message_type="DFT",
        trigger_event="P03",
        application_ack="AL",
    )


def test_a_gtin_alone_in_prt16_names_the_item():
    message = Dft("C", [Ft1("TX-1", device_identifier=scenario.STENT_GTIN, lot="L", serial="S")])
    (line,) = read_dft_p03(message.encode(), {}, SITE).usages
    assert (line.gtin, line.lot, line.serial) == (scenario.STENT_GTIN, "L", "S")


def test_a_reply_subject_outside_the_ehrs_inbox_gets_no_ack():
    message = Dft("C", [Ft1("TX-1", item_id="X")]).encode()
    assert read_dft_p03(message, {"sinew-reply-to": "sinew.usage.north.x.y.v1"}, SITE).ack is None
    assert read_dft_p03(message, {"sinew-reply-to": "_INBOX_ehr-south.x"}, SITE).ack is None


@pytest.mark.parametrize(
    ("message", "cause", "reason"),
    [
        (
            Dft("C", [Ft1("T", item_id="X")], with_evn=False),
            "invalid",
            "HL7 2.8.2 validation failed: Missing required child DFT_P03.EVN",
        ),
        (
            Dft("C", [Ft1("T", item_id="X", quantity="two")]),
            "invalid",
            "HL7 2.8.2 validation failed: two is not an HL7 valid NM value",
        ),
        (
            Dft("C", [Ft1("T", item_id="X")], message_type="ADT^A01^ADT_A01"),
            "malformed",
            "HL7 message type ADT^A01 is not a usage; send DFT^P03",
        ),
        (
            Dft("C", [Ft1("T", item_id="X")], version="2.5"),
            "malformed",
            "HL7 version 2.5 is not read for usage; send 2.8.2",
        ),
        (
            Dft("C", [Ft1("T")]),
            "invalid",
            "FT1 #1: no item (a PRT with the UDI or GTIN, or FT1-34 item number)",
        ),
        (
            Dft("C", [Ft1("T", item_id="X", transaction_type="PY")]),
            "invalid",
            "FT1 #1 FT1-6: transaction type PY is neither a charge (CG) nor a credit or reversal"
            " (CD, CR)",
        ),
        (b"not HL7", "malformed", "HL7 message unreadable: it does not start with a readable MSH"),
    ],
)
def test_invalid_hl7_is_refused_with_a_precise_reason(message, cause, reason):
    data = message.encode() if isinstance(message, Dft) else message
    problem = refused(read_dft_p03, data)
    assert (problem.cause, problem.reason) == (cause, reason)


def test_a_validators_message_never_quotes_the_patient():
    long_name = f"{PATIENT_FAMILY}{'Q' * 300}^GIVEN"
    problem = refused(
        read_dft_p03, Dft("C", [Ft1("T", item_id="X")], patient_name=long_name).encode()
    )
    assert problem.reason.startswith("HL7 2.8.2 validation failed: The value [redacted] exceed")
    assert PATIENT_FAMILY not in problem.reason


def test_the_ack_names_the_original_control_id_and_says_why():
    request = ack_request_from_raw(
        Dft("CTRL-9", [], with_evn=False, accept_ack="AL").encode(), REPLY, SITE
    )
    at = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    ack = build_ack(request, "AE", "Missing | EVN", site=SITE, control_id="ACK-1", at=at)
    parsed = parse_message(ack.decode())
    assert (parsed.msa.msa_1.value, parsed.msa.msa_2.value) == ("AE", "CTRL-9")
    assert parsed.msh.msh_10.value == "ACK-1" and parsed.msh.msh_5.value == "EPIC"
    assert b"ERR|" in ack and b"Missing \\F\\ EVN" in ack
    assert ack_request_from_raw(b"junk", REPLY, SITE) == AckRequest(
        reply_to=REPLY["sinew-reply-to"]
    )


# -- FHIR -------------------------------------------------------------------------------------


def test_a_procedure_with_devices_becomes_one_line_per_device():
    devices = [
        fhir_device("d1", udi=scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S1")),
        fhir_device("d2", item_id=scenario.GUIDEWIRE, lot="G1", expiry="2031-01-31"),
    ]
    document = read_fhir(fhir_procedure("PROC-1", devices), {}, SITE)
    stent, wire = document.usages
    assert [u.source_usage_id for u in document.usages] == ["PROC-1/1", "PROC-1/2"]
    assert stent.udi.startswith("(01)") and stent.mrn == MRN
    assert stent.patient_name == f"PATIENT {PATIENT_FAMILY}"
    assert (wire.item_id, wire.lot, wire.expiry) == (scenario.GUIDEWIRE, "G1", date(2031, 1, 31))
    assert (wire.case_id, wire.physician_id, wire.location_id) == ("CASE-1", "DR-7", "CATH-LAB-1")
    assert wire.used_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def test_entered_in_error_voids_the_lines_of_the_same_resource():
    devices = [fhir_device("d1", item_id="A"), fhir_device("d2", item_id="B")]
    document = read_fhir(fhir_procedure("PROC-1", devices, status="entered-in-error"), {}, SITE)
    assert document.usages == ()
    assert [v.source_usage_id for v in document.voids] == ["PROC-1/1", "PROC-1/2"]
    delivery = fhir_supply_delivery(
        "SD-1", fhir_device("w", item_id="A"), status="entered-in-error"
    )
    assert [v.source_usage_id for v in read_fhir(delivery, {}, SITE).voids] == ["SD-1"]


def test_a_supply_delivery_is_one_line_with_its_quantity():
    delivery = fhir_supply_delivery(
        "SD-1", fhir_device("w", gtin=scenario.GUIDEWIRE_BOX_GTIN, lot="G"), quantity=3, unit="BX"
    )
    (line,) = read_fhir(delivery, {}, SITE).usages
    assert (line.gtin, line.quantity.value, line.quantity.uom) == (
        scenario.GUIDEWIRE_BOX_GTIN,
        3,
        "BX",
    )
    assert (line.case_id, line.procedure_code, line.procedure_name) == ("CASE-1", "92928", "PCI")


def test_invalid_fhir_is_refused_by_path_without_the_value():
    bad = json.loads(fhir_procedure("P", [fhir_device("d", item_id="X")]))
    bad["subject"]["display"] = [PATIENT_FAMILY]
    problem = refused(read_fhir, json.dumps(bad).encode())
    assert problem.cause == "invalid"
    assert problem.reason == "FHIR R4B Procedure: subject.display: Input should be a valid string"
    assert refused(read_fhir, b"{").cause == "malformed"
    assert "is not a usage" in refused(read_fhir, b'{"resourceType": "Patient"}').reason
    no_case = json.loads(fhir_procedure("P", [fhir_device("d", item_id="X")]))
    del no_case["encounter"]
    assert refused(read_fhir, json.dumps(no_case).encode()).reason == (
        "Procedure.encounter: the case (encounter) is required"
    )
