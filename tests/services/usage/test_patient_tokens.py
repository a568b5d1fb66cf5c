"""Patient tokens are keyed pseudonyms of the MRN: a usage database rebuilt from stream history
gives every patient the token the live service gave (and other services already hold), two
sites give one MRN unrelated tokens, and usage refuses to start without its site's key."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys

import pytest
import scenario_data as scenario
from helpers import new_site, query
from usage_documents import MRN, Dft, Ft1, json_usage
from usage_world import RECORDED, usage_world

from sinew.services.usage.config import configure
from sinew.services.usage.domain import patient_token_for

OTHER_MRN = "MRN-SYNTH-0002"


async def sinew(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sinew.cli.main",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


def without_key(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SINEW_PATIENT_TOKEN_KEY_FILE"}
    return {**env, **extra}


@pytest.mark.asyncio
async def test_a_rebuilt_usage_database_gives_every_patient_the_same_token(usage, tmp_path):
    site = usage.site
    await usage.master_data()
    await usage.send_json(json_usage(site, "U-1", item_id=scenario.STENT, lot="L1", serial="S1"))
    await usage.send_hl7(
        Dft("C-2", [Ft1("U-2", item_id=scenario.GUIDEWIRE, lot="G1")], mrn=OTHER_MRN)
    )
    await usage.send_json(
        json_usage(site, "U-3", case_id="CASE-3", item_id=scenario.GUIDEWIRE, lot="G1")
    )
    recorded = await usage.wait_events(RECORDED, 3)
    live_patients = query(usage.db, "SELECT mrn, patient_token FROM patients ORDER BY mrn")
    live_usages = query(usage.db, "SELECT usage_id, patient_token FROM usages ORDER BY usage_id")
    assert len(live_patients) == 2
    assert sorted((e.usage_id, e.patient_token) for e in recorded) == live_usages

    # As an operator would, from the data folder where the site's key is kept (not the env).
    code, _, err = await sinew(
        "rebuild",
        "usage",
        "--site",
        site,
        "--data",
        str(tmp_path),
        "--nats-url",
        usage.settings.nats_url,
        env=without_key(),
    )
    assert code == 0, err
    (rebuilt,) = (tmp_path / site).glob("usage.sqlite.rebuild-*Z")
    assert query(rebuilt, "SELECT mrn, patient_token FROM patients ORDER BY mrn") == live_patients
    assert (
        query(rebuilt, "SELECT usage_id, patient_token FROM usages ORDER BY usage_id")
        == live_usages
    )


@pytest.mark.asyncio
async def test_one_patient_at_two_sites_has_two_unrelated_tokens(nats_server, tmp_path):
    tokens = {}
    async with (
        usage_world(nats_server, tmp_path, new_site()) as north,
        usage_world(nats_server, tmp_path, new_site()) as south,
    ):
        for world in (north, south):
            await world.master_data()
            await world.send_json(json_usage(world.site, "U-1", item_id=scenario.GUIDEWIRE))
        for world in (north, south):
            (event,) = await world.wait_events(RECORDED, 1)
            # Each runtime in this one process derives with its own site's key.
            key = world.settings.patient_token_key_file.read_bytes().strip()
            assert event.patient_token == patient_token_for(key, world.site, MRN)
            tokens[world.site] = event.patient_token
    assert len(set(tokens.values())) == 2


def test_the_same_key_still_gives_each_site_its_own_token():
    key = b"k" * 32
    assert patient_token_for(key, "north", MRN) == patient_token_for(key, "north", MRN)
    assert patient_token_for(key, "north", MRN) != patient_token_for(key, "south", MRN)
    assert patient_token_for(key, "north", MRN) != patient_token_for(b"j" * 32, "north", MRN)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("key", "says"),
    [
        (None, "set SINEW_PATIENT_TOKEN_KEY_FILE"),
        ("missing", "cannot read the patient-token key"),
        ("short", "fewer than 32"),
    ],
)
async def test_usage_refuses_to_start_without_its_key(tmp_path, key, says):
    env = without_key(
        SINEW_SITE="north",
        SINEW_DATA_DIR=str(tmp_path),
        SINEW_NATS_URL="nats://127.0.0.1:1",
        SINEW_REQUIRE_SYNC_ALWAYS="0",
    )
    if key == "missing":
        env["SINEW_PATIENT_TOKEN_KEY_FILE"] = str(tmp_path / "no-such.key")
    elif key == "short":
        (tmp_path / "short.key").write_text("0123456789abcdef\n")
        env["SINEW_PATIENT_TOKEN_KEY_FILE"] = str(tmp_path / "short.key")
    code, _, err = await sinew("run", "usage", env=env)
    assert code != 0
    assert says in err and "refusing to start" in err
    assert not (tmp_path / "north" / "usage.sqlite").exists()


@pytest.mark.asyncio
async def test_another_key_by_mistake_is_refused_and_a_rotation_must_be_meant(usage, tmp_path):
    await usage.master_data()
    await usage.send_json(json_usage(usage.site, "U-1", item_id=scenario.GUIDEWIRE))
    await usage.wait_events(RECORDED, 1)
    other = tmp_path / "other.key"
    other.write_text("f" * 64)
    mistaken = dataclasses.replace(usage.settings, patient_token_key_file=other)
    with pytest.raises(SystemExit, match="every returning patient would get a second token"):
        configure(mistaken)
    # `sinew rebuild` checks the same way: a rebuild under another key is refused too.
    code, _, err = await sinew(
        "rebuild", "usage", "--site", usage.site, "--data", str(usage.settings.data_dir),
        "--nats-url", usage.settings.nats_url,
        env=without_key(SINEW_PATIENT_TOKEN_KEY_FILE=str(other)),
    )  # fmt: skip
    assert code != 0 and "refusing to start" in err
    rotated = configure(dataclasses.replace(mistaken, patient_token_key_rotated=True))
    assert rotated.key_fingerprint != configure(usage.settings).key_fingerprint
