"""Patient identifiers never leave the usage service: a synthetic MRN and name sent in every
format (valid and invalid) appear in no stream but the EHR's own CLINICAL_INGRESS, in no log
line, no metric and no HL7 ACK, and inside the usage database only in its `patients` table (and
the raw bytes of its dead letters, which are the EHR's documents as sent)."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
import scenario_data as scenario
from helpers import eventually, new_site
from usage_documents import (
    FUTURE,
    MRN,
    PATIENT_FAMILY,
    Dft,
    Ft1,
    fhir_device,
    fhir_procedure,
    fhir_supply_delivery,
    json_usage,
    json_void,
)
from usage_world import BILL_ONLY, RAISED, RECORDED, usage_world

pytestmark = pytest.mark.asyncio

PHI = [MRN, PATIENT_FAMILY]  # the name's family part is in every form of the name
RAW_EHR_STREAM = "CLINICAL_INGRESS"
MAY_HOLD_PHI = {"patients", "sinew_dead_letters"}


async def every_message(js, stream: str) -> list[bytes]:
    info = await js.stream_info(stream)
    found = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            message = await js.get_msg(stream, seq)
        except Exception:  # deleted or purged: nothing to read
            continue
        headers = json.dumps(message.headers or {}).encode()
        found.append(message.subject.encode() + b"\n" + headers + b"\n" + (message.data or b""))
    return found


def tables_holding(db_path, needle: str) -> set[str]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        holding = set()
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            for column in columns:
                hit = conn.execute(
                    f"SELECT 1 FROM {table} WHERE instr(CAST({column} AS BLOB), ?) > 0 LIMIT 1",
                    (needle.encode(),),
                ).fetchone()
                if hit:
                    holding.add(table)
        return holding
    finally:
        conn.close()


async def test_patient_identifiers_stay_inside_the_usage_service(
    fresh_nats_server, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG, logger="sinew")
    caplog.set_level(logging.INFO)
    site = new_site()
    async with usage_world(fresh_nats_server, tmp_path, site) as usage:
        await usage.master_data()
        stent = dict(gtin=scenario.STENT_GTIN, expiry=FUTURE)
        icd = scenario.hibc_barcode(scenario.ICD_HIBC_DI, serial="ICD-S9", expiry=FUTURE)
        async with usage.ehr_inbox() as (reply_to, acks):
            await usage.send_json(json_usage(site, "P-1", lot="L1", serial="S1", **stent))
            await usage.send_json(json_usage(site, "P-2", udi=icd, lot="ICD-L"))  # bill-only
            await usage.send_json(json_usage(site, "P-3", item_id="UNKNOWN-ITEM"))  # held
            udi = scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S2", expiry=FUTURE)
            await usage.send_hl7(Dft("C-1", [Ft1("P-4", udi=udi)], accept_ack="AL"), reply_to)
            await usage.send_fhir(
                fhir_procedure(
                    "P-5",
                    [
                        fhir_device(
                            "d",
                            udi=scenario.gs1_barcode(scenario.STENT_GTIN, lot="L1", serial="S3"),
                        )
                    ],
                )
            )
            await usage.send_fhir(
                fhir_supply_delivery("P-6", fhir_device("w", item_id=scenario.GUIDEWIRE, lot="G1"))
            )
            # Invalid documents whose validators could quote the patient back.
            long_name = f"{PATIENT_FAMILY}{'Q' * 300}^{PATIENT_FAMILY}"
            await usage.send_hl7(
                Dft("C-2", [Ft1("P-7", item_id="X")], patient_name=long_name), reply_to
            )
            bad_fhir = json.loads(fhir_procedure("P-8", [fhir_device("d", item_id="X")]))
            bad_fhir["subject"]["display"] = [PATIENT_FAMILY, MRN]
            await usage.send_fhir(json.dumps(bad_fhir).encode())
            await usage.send_void(json_void(site, "P-1"))
            await usage.wait_events(RECORDED, 5)
            await usage.wait_events(BILL_ONLY, 1)
            await usage.wait_events(RAISED, 1)

            async def two_dead_letters() -> bool:
                return (await usage.get("/v1/dead-letters"))[1]["total"] == 2

            await eventually(two_dead_letters, what="both invalid documents dead-lettered")
            await eventually(lambda: len(acks) == 2, what="AA and AE acknowledgements")
            await usage.quiet()
        metrics = await (await usage.http.get("/metrics")).text()
        _, recall = await usage.get("/v1/recall", lot="L1")
        _, listing = await usage.get("/v1/dead-letters")
        streams = [s.config.name for s in await usage.js.streams_info()]
        outside = {s: await every_message(usage.js, s) for s in streams if s != RAW_EHR_STREAM}
        inside = await every_message(usage.js, RAW_EHR_STREAM)

    assert "USAGE" in outside and sum(len(m) for m in outside.values()) > 20
    assert any(MRN.encode() in m for m in inside), "the raw EHR documents do carry the MRN"
    for stream, messages in outside.items():
        for message in messages:
            for secret in PHI:
                assert secret.encode() not in message, (
                    f"{secret} in stream {stream}: {message[:300]!r}"
                )
    logged = "\n".join(r.getMessage() + str(r.exc_text or "") for r in caplog.records)
    assert "dead letter" in logged  # the log was captured
    for text, where in [
        (logged, "log"),
        (metrics, "metrics"),
        (json.dumps(recall), "recall"),
        (json.dumps(listing), "dead-letter list"),
        *((a.decode(), "HL7 ACK") for a in acks),
    ]:
        for secret in PHI:
            assert secret not in text, f"{secret} in the {where}"
    assert tables_holding(usage.db, MRN) <= MAY_HOLD_PHI
    assert "patients" in tables_holding(usage.db, MRN)
    assert tables_holding(usage.db, PATIENT_FAMILY) <= {"sinew_dead_letters"}
