"""The item master's own rules, without NATS or SQLite: what a record must be on its own, what it
must be against what is held, its version, and the replica entries it becomes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import msgspec
import pytest
import scenario_data as s

from sinew.contracts.items import PackSize, ParLevel, PriceTier
from sinew.services.items.domain import (
    Rejected,
    VersionConflict,
    api_version,
    canonical,
    check,
    identity_of,
    item_codes,
    record_key,
    record_problems,
    replica_writes,
    review,
    supersedes,
)


class FakeHeld:
    """What the item master holds, in memory."""

    def __init__(self, *records) -> None:
        self.records = {(type(r).__name__, identity_of(r)): r for r in records}

    def _get(self, type_name: str, identity: str):
        return self.records.get((type_name, identity))

    def item(self, item_id):
        return self._get("ItemUpserted", item_id)

    def supplier(self, supplier_id):
        return self._get("SupplierUpserted", supplier_id)

    def contract(self, number):
        return self._get("ContractUpserted", number)

    def cost_centre(self, cost_centre_id):
        return self._get("CostCentreUpserted", cost_centre_id)

    def contracts_for(self, item_id):
        return [
            r
            for (kind, _), r in self.records.items()
            if kind == "ContractUpserted" and any(p.item_id == item_id for p in r.prices)
        ]

    def code_owner(self, code):
        for (kind, identity), record in self.records.items():
            if kind == "ItemUpserted" and code in item_codes(record):
                return identity
        return None

    def part_owner(self, supplier_id, part_number):
        for (kind, identity), record in self.records.items():
            if kind == "ItemUpserted" and any(
                (p.supplier_id, p.part_number) == (supplier_id, part_number)
                for p in record.supplier_parts
            ):
                return identity
        return None


def test_the_scenario_master_data_is_acceptable_as_it_is():
    held = FakeHeld(*s.master_data())
    for record in s.master_data():
        assert record_problems(record) == []
        assert check(record, held) == []


def test_an_item_record_is_checked_on_its_own_and_every_problem_is_named():
    item = msgspec.structs.replace(
        s.guidewire(),
        gtin="00812345000055",  # wrong check digit
        packs=(
            PackSize(uom="BX", base_units=Decimal(10), gtin=s.GUIDEWIRE_BOX_GTIN),
            PackSize(uom="BX", base_units=Decimal(20)),
            PackSize(uom="CA", base_units=Decimal(100), gtin=s.GUIDEWIRE_BOX_GTIN),
        ),
        udi_di="812345000054",
        udi_issuer="GS1",
    )
    problems = record_problems(item)
    assert "unit of measure BX is listed more than once (base unit and packs)" in problems
    assert any("gtin 00812345000055: Invalid GTIN check digit" in p for p in problems)
    assert f"GTIN {s.GUIDEWIRE_BOX_GTIN} names more than one packaging level" in problems
    assert any("must be written as a GTIN-14" in p for p in problems)


def test_udi_issuer_and_hibc_device_identifier_are_checked():
    lone = msgspec.structs.replace(s.consigned_icd(), udi_issuer=None)
    assert record_problems(lone) == ["udi_di and udi_issuer go together: give both or neither"]
    bad_hibc = msgspec.structs.replace(s.consigned_icd(), udi_di="1234")
    assert "HIBCC udi_di 1234 is not labeler" in record_problems(bad_hibc)[0]


def test_a_pack_gtin_another_item_holds_rejects_the_item():
    held = FakeHeld(s.guidewire(), s.medsup())
    thief = msgspec.structs.replace(
        s.stent(), packs=(PackSize(uom="BX", base_units=Decimal(1), gtin=s.GUIDEWIRE_BOX_GTIN),)
    )
    with pytest.raises(Rejected) as rejected:
        check(thief, held)
    assert rejected.value.reason == (
        f"item {s.STENT}: GTIN {s.GUIDEWIRE_BOX_GTIN} already belongs to item {s.GUIDEWIRE}"
    )
    # The item itself may of course keep its own codes at its next version.
    assert check(msgspec.structs.replace(s.guidewire(), version=2), held) == []


def test_a_supplier_part_another_item_holds_rejects_the_item():
    held = FakeHeld(s.stent())
    copy = msgspec.structs.replace(s.stent_v2(), supplier_parts=s.stent().supplier_parts)
    with pytest.raises(Rejected, match="supplier part MEDSUP/MS-DES-318 already belongs to item"):
        check(copy, held)


def test_a_contract_price_unit_must_be_a_unit_of_a_known_item_and_an_unknown_item_is_noted():
    contract = s.medsup_contract()
    bad_unit = msgspec.structs.replace(
        contract,
        prices=(msgspec.structs.replace(contract.prices[0], uom="CA"),),
    )
    with pytest.raises(
        Rejected, match=f"price of {s.STENT}: item {s.STENT} has no unit of measure CA"
    ):
        check(bad_unit, FakeHeld(s.stent(), s.medsup()))
    # Not known yet: accepted, and the note says its unit could not be checked.
    notes = check(bad_unit, FakeHeld(s.medsup()))
    assert notes == [f"item {s.STENT} is not known yet; its unit CA is unchecked"]


def test_contract_prices_dates_and_tiers_are_checked():
    contract = s.medsup_contract()
    price = contract.prices[0]
    broken = msgspec.structs.replace(
        contract,
        effective_to=date(2023, 12, 31),
        prices=(
            msgspec.structs.replace(price, unit_price=Decimal("NaN")),
            price,
            msgspec.structs.replace(
                contract.prices[4],
                tiers=(
                    PriceTier(min_quantity=Decimal(5), unit_price=Decimal("430")),
                    PriceTier(min_quantity=Decimal(5), unit_price=Decimal("-1")),
                ),
            ),
        ),
    )
    problems = record_problems(broken)
    assert "effective_to 2023-12-31 is before effective_from 2024-01-01" in problems
    assert f"item {s.STENT} is priced per EA more than once" in problems
    assert (
        f"price of {s.STENT} per EA: unit_price NaN must be a finite amount of at least 0"
        in problems
    )
    assert f"price of {s.GUIDEWIRE} per BX: two tiers start at 5" in problems
    assert any("tier from 5 -1 must be a finite amount" in p for p in problems)


def test_an_item_cannot_substitute_for_itself():
    itself = msgspec.structs.replace(s.stent_substitution(), substitute_item_id=s.STENT)
    with pytest.raises(Rejected, match=f"item {s.STENT} cannot substitute for itself"):
        check(itself, FakeHeld())


def test_references_to_records_not_known_yet_are_accepted_with_notes():
    location = msgspec.structs.replace(
        s.cath_lab(),
        par_levels=(
            *s.cath_lab().par_levels,
            ParLevel(item_id="UNKNOWN-ITEM", par_level=Decimal(2), reorder_point=Decimal(1)),
        ),
    )
    result = review(location, FakeHeld(s.stent()))
    assert result.problems == []
    assert result.notes == [
        f"cost centre {s.CARDIOLOGY} is not known yet",
        "item UNKNOWN-ITEM (par level) is not known yet",
    ]
    duplicate = msgspec.structs.replace(s.cath_lab(), par_levels=s.cath_lab().par_levels * 2)
    assert record_problems(duplicate) == [f"item {s.STENT} has more than one par level"]


def test_an_api_change_gets_the_next_version_unless_it_names_a_newer_one():
    assert api_version("item", "X", None, None) == 1
    assert api_version("item", "X", 3, None) == 4
    assert api_version("item", "X", 3, 7) == 7
    with pytest.raises(VersionConflict, match="item X is at version 3; version 3 is not newer"):
        api_version("item", "X", 3, 3)


def test_the_canonical_event_is_the_whole_record_with_source_and_time():
    at = datetime(2025, 5, 1, 12, tzinfo=UTC)
    event = canonical(s.as_upsert(s.stent()), "import", at)
    assert event == msgspec.structs.replace(s.stent(), source="import", upserted_at=at)


def test_replica_keys_are_valid_kv_keys_whatever_the_id():
    assert record_key("item", s.STENT) == "item.STENT-DES-3x18"
    assert record_key("item", "ABC 1.2=x") == "item.ABC=201=2E2=3Dx"
    assert record_key("cost-centre", "CC/é") == "cost-centre.CC/=C3=A9"


def test_an_item_becomes_its_record_key_and_one_key_per_code_and_drops_codes_it_gave_up():
    v1 = s.guidewire()
    v2 = msgspec.structs.replace(v1, version=2, packs=v1.packs[:1])
    writes = {(w.key, w.op) for w in replica_writes(v2, v1)}
    assert writes == {
        (f"item.{s.GUIDEWIRE}", "put"),
        (f"gtin.{s.GUIDEWIRE_GTIN}", "put"),
        (f"gtin.{s.GUIDEWIRE_BOX_GTIN}", "put"),
        (f"gtin.{s.GUIDEWIRE_CASE_GTIN}", "delete"),
    }
    hibc = {w.key for w in replica_writes(s.consigned_icd(), None)}
    assert hibc == {f"item.{s.ICD}", f"udi.{s.ICD_HIBC_DI}"}


def test_the_bucket_never_takes_an_older_version_of_the_same_record():
    encode = msgspec.json.Encoder(decimal_format="string").encode
    v1, v2 = s.stent(), msgspec.structs.replace(s.stent(), version=2)
    (put_v1,) = [w for w in replica_writes(v1, None) if w.key.startswith("item.")]
    (put_v2,) = [w for w in replica_writes(v2, None) if w.key.startswith("item.")]
    assert supersedes(put_v2, encode(v1))
    assert not supersedes(put_v1, encode(v2))
    assert not supersedes(put_v2, encode(v2))  # the same put again (after a crash) changes nothing
    assert supersedes(put_v1, None)
    # A code another item held before giving it up goes to its new owner; deleting this item's
    # old code leaves the other item's entry alone.
    (gtin_put,) = [w for w in replica_writes(v1, None) if w.key == f"gtin.{s.STENT_GTIN}"]
    other = encode(msgspec.structs.replace(s.stent_v2(), version=9))
    assert supersedes(gtin_put, other)
    v3 = msgspec.structs.replace(v1, version=3, gtin=None, udi_di=None, udi_issuer=None)
    (gtin_delete,) = [w for w in replica_writes(v3, v1) if w.op == "delete" and "gtin" in w.key]
    assert not supersedes(gtin_delete, other)
    assert supersedes(gtin_delete, encode(v1))
