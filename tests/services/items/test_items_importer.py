"""Reading a bulk-import file, without NATS: which rows would be sent and why the others are not."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
import scenario_data as s

from sinew.contracts.items import ContractUpsert, ItemUpsert, LocationUpsert
from sinew.services.items.importer import (
    ImportFileError,
    ImportRow,
    message_id,
    read_csv,
    read_json_lines,
    read_records,
)

SITE = "north"
encode = msgspec.json.Encoder(decimal_format="string").encode


def line(record, **drop) -> str:
    fields = msgspec.to_builtins(s.as_upsert(record))
    for name in drop:
        fields.pop(name)
    return msgspec.json.encode(fields).decode() + "\n"


def test_json_lines_become_upserts_and_bad_rows_say_which_line_and_why():
    lines = [
        line(s.medsup()),
        "\n",
        line(s.stent(), version=True, site=True),  # version 1 and the loaded site by default
        '{"kind": "item", "item_id": "X"\n',
        line(s.cath_lab(), name=True),
        line(s.stent(site="south")),
        line(msgspec.structs.replace(s.stent_substitution(), substitute_item_id=s.STENT)),
        '["not", "an", "object"]\n',
    ]
    rows = list(read_json_lines(lines, SITE))
    assert [r.line for r in rows] == [1, 3, 4, 5, 6, 7, 8]
    assert rows[0].record == s.as_upsert(s.medsup())
    assert rows[1].record == s.as_upsert(s.stent())
    problems = {r.line: r.problem for r in rows}
    assert problems[1] is None and problems[3] is None
    assert problems[4].startswith("malformed JSON")
    assert problems[5] == "Object missing required field `name`"
    assert problems[6] == "site 'south' is not the site loaded (north)"
    assert problems[7] == f"item {s.STENT} cannot substitute for itself"
    assert problems[8] == "not a JSON object"


def test_a_csv_of_items_reads_packs_parts_and_yes_no_flags():
    text = [
        "item_id,description,base_uom,packs,gtin,supplier_parts,implant,lot_controlled,version\n",
        f"{s.GUIDEWIRE},Guidewire,EA,BX=10@{s.GUIDEWIRE_BOX_GTIN};CA=100,{s.GUIDEWIRE_GTIN},"
        "MEDSUP:MS-GW-035@BX,no,yes,3\n",
        "BAD-1,Broken packs,EA,BX,,,,,\n",
        "BAD-2,Broken flag,EA,,,,maybe,,\n",
        "BAD-3,Pack unit twice,EA,EA=1,,,,,\n",
    ]
    rows = list(read_csv(text, "item", SITE))
    item = rows[0].record
    assert isinstance(item, ItemUpsert) and rows[0].problem is None
    assert item.version == 3 and item.site == SITE
    assert [(p.uom, p.base_units, p.gtin) for p in item.packs] == [
        ("BX", Decimal(10), s.GUIDEWIRE_BOX_GTIN),
        ("CA", Decimal(100), None),
    ]
    assert item.supplier_parts[0].uom == "BX"
    assert (item.implant, item.lot_controlled) == (False, True)
    assert rows[1] == ImportRow(3, problem="column packs: 'BX' is not unit=base units[@GTIN]")
    assert rows[2].line == 4 and "Expected `bool`" in rows[2].problem
    assert rows[2].problem.endswith("at `$.implant`")
    assert rows[3].problem == "unit of measure EA is listed more than once (base unit and packs)"


def test_a_csv_of_contracts_reads_prices_with_tiers_and_of_locations_par_levels():
    contracts = list(
        read_csv(
            [
                "contract_number,supplier_id,effective_from,prices\n",
                f"C-1,MEDSUP,2024-01-01,{s.GUIDEWIRE}@BX=450.00|5=430.00;{s.STENT}@EA=1200.00\n",
            ],
            "contract",
            SITE,
        )
    )
    contract = contracts[0].record
    assert isinstance(contract, ContractUpsert)
    assert [(p.item_id, p.uom, p.unit_price) for p in contract.prices] == [
        (s.GUIDEWIRE, "BX", Decimal("450.00")),
        (s.STENT, "EA", Decimal("1200.00")),
    ]
    assert contract.prices[0].tiers[0].min_quantity == 5
    locations = list(
        read_csv(
            [
                "location_id,name,location_type,par_levels\n",
                f"{s.CATH_LAB},Cath lab,procedure_room,{s.STENT}=4/2\n",
                f"BAD,Cath lab,procedure_room,{s.STENT}=2/4\n",
            ],
            "location",
            SITE,
        )
    )
    assert isinstance(locations[0].record, LocationUpsert)
    assert locations[0].record.par_levels == s.cath_lab().par_levels
    assert "reorder_point must be between 0 and par_level" in locations[1].problem


def test_a_csv_with_an_unknown_column_or_kind_is_refused_whole(tmp_path):
    with pytest.raises(ImportFileError, match=r"columns \['colour'\] are not fields of item"):
        list(read_csv(["item_id,colour\n", "X,red\n"], "item", SITE))
    with pytest.raises(ImportFileError, match="unknown kind 'widget'"):
        list(read_csv(["item_id\n"], "widget", SITE))
    path = tmp_path / "items.csv"
    path.write_text("item_id\n")
    with pytest.raises(ImportFileError, match="say which with --kind"):
        read_records(path, site=SITE)


def test_the_message_id_is_the_same_for_the_same_file_line_and_content_only():
    row = ImportRow(4, s.as_upsert(s.stent()))
    payload = encode(row.record)
    same = message_id(SITE, "/data/items.jsonl", row, payload)
    assert same == message_id(SITE, "/data/items.jsonl", row, payload)
    edited = encode(s.as_upsert(s.stent(), description="edited"))
    assert same != message_id(SITE, "/data/items.jsonl", row, edited)
    assert same != message_id(SITE, "/data/other.jsonl", row, payload)
    assert same != message_id(SITE, "/data/items.jsonl", ImportRow(5, row.record), payload)
