"""`sinew import`: a site's initial load from a file, end to end through the MDM ingress subject
and the running items service."""

from __future__ import annotations

import asyncio
import os
import sys

import msgspec
import pytest
import scenario_data as s
from helpers import eventually

pytestmark = pytest.mark.asyncio


async def sinew_import(items, tmp_path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINEW_NATS_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinew.cli.main",
        "import",
        *args,
        "--site",
        items.site,
        "--nats-url",
        items.settings.nats_url,
        "--data",
        str(tmp_path / "no-secrets"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_sinew_import_loads_a_file_reports_rejected_rows_and_a_rerun_changes_nothing(
    items, tmp_path
):
    records = [s.as_upsert(r) for r in s.master_data(items.site)]
    lines = [msgspec.json.encode(msgspec.to_builtins(r)).decode() for r in records]
    no_description = msgspec.to_builtins(records[2])
    del no_description["description"]
    lines.append(msgspec.json.encode(no_description).decode())
    lines.append(
        lines[8].replace(  # the substitution
            f'"substitute_item_id":"{s.STENT_V2}"', f'"substitute_item_id":"{s.STENT}"'
        )
    )
    path = tmp_path / "north.jsonl"
    path.write_text("\n".join(lines) + "\n")

    code, out, err = await sinew_import(items, tmp_path, str(path))
    assert code == 1, out + err
    assert f"{path}: 10 sent, 0 already sent, 2 rejected" in out
    assert "  line 11: Object missing required field `description`" in out
    assert f"  line 12: item {s.STENT} cannot substitute for itself" in out
    assert f"[{'#' * 30}] 12/12 rows" in err

    async def loaded() -> bool:
        return (await items.get("/v1/changes", outcome="applied"))[1]["total"] == 10

    await eventually(loaded, what="the ten records applied")
    status, stent = await items.get(f"/v1/items/{s.STENT}")
    assert status == 200 and stent["source"] == "import"
    assert {e.source for e in await items.events()} == {"import"}

    code, out, _ = await sinew_import(items, tmp_path, str(path))
    assert f"{path}: 0 sent, 10 already sent, 2 rejected" in out
    await asyncio.sleep(0.5)
    assert len(await items.events()) == 5, "a re-run publishes nothing new"


async def test_sinew_import_reads_a_csv_of_one_kind(items, tmp_path):
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,description,base_uom,packs,gtin,lot_controlled\n"
        f"{s.GUIDEWIRE},Guidewire 0.035,EA,BX=10@{s.GUIDEWIRE_BOX_GTIN},{s.GUIDEWIRE_GTIN},yes\n"
    )
    code, out, err = await sinew_import(items, tmp_path, str(path), "--kind", "item")
    assert code == 0, out + err

    async def found() -> bool:
        status, body = await items.get("/v1/items", gtin=s.GUIDEWIRE_BOX_GTIN)
        return status == 200 and body["total"] == 1

    await eventually(found, what="the guidewire found by its box GTIN")
    _, body = await items.get(f"/v1/items/{s.GUIDEWIRE}")
    assert (body["lot_controlled"], body["packs"][0]["base_units"]) == (True, "10")
    code, _, err = await sinew_import(items, tmp_path, str(path))
    assert code == 2 and "say which with --kind" in err
