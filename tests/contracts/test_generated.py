"""The generated contract files agree with the catalogue, and released schemas only grow."""

from __future__ import annotations

import json
from typing import Literal

import msgspec

from sinew.contracts import CATALOGUE
from sinew.contracts.generate import (
    HERE,
    asyncapi,
    compatibility_problems,
    incompatible,
    rendered,
    stale,
)


def test_generated_files_are_up_to_date():
    problems = stale(rendered())
    assert not problems, "run `just contracts`:\n" + "\n".join(problems)


def test_no_released_schema_changed_incompatibly():
    problems = incompatible(rendered(), HERE)
    assert not problems, "publish a new major version instead:\n" + "\n".join(problems)


class Released(msgspec.Struct):
    invoice_number: str
    quantity: int
    status: Literal["open", "paid"]
    note: str | None = None


class AddsOptional(msgspec.Struct):
    invoice_number: str
    quantity: int
    status: Literal["open", "paid", "disputed"]
    note: str | None = None
    currency: str = "USD"


class RemovesField(msgspec.Struct):
    invoice_number: str
    status: Literal["open", "paid"]
    note: str | None = None


class RetypesField(msgspec.Struct):
    invoice_number: str
    quantity: str
    status: Literal["open", "paid"]
    note: str | None = None


class AddsRequired(msgspec.Struct):
    invoice_number: str
    quantity: int
    status: Literal["open", "paid"]
    currency: str
    note: str | None = None


class NarrowsEnum(msgspec.Struct):
    invoice_number: str
    quantity: int
    status: Literal["open"]
    note: str | None = None


def problems(old: type, new: type) -> list[str]:
    return compatibility_problems(msgspec.json.schema(old), msgspec.json.schema(new))


def test_adding_optional_fields_and_enum_values_is_compatible():
    assert problems(Released, AddsOptional) == []


def test_removing_retyping_or_requiring_a_field_is_refused():
    assert problems(Released, RemovesField) == ["$.quantity: removed"]
    assert problems(Released, RetypesField) == [
        "$.quantity: type changed from 'integer' to 'string'"
    ]
    assert problems(Released, AddsRequired) == ["$.currency: newly required"]
    assert problems(Released, NarrowsEnum) == ["$.status: enum values removed"]


def test_asyncapi_describes_every_channel_with_its_publisher_and_consumers():
    document = asyncapi(CATALOGUE)
    assert document["asyncapi"] == "3.0.0"
    addresses = [c["address"] for c in document["channels"].values()]
    assert len(addresses) == len(set(addresses)) == len(CATALOGUE.channels)
    for channel in CATALOGUE.channels:
        assert f"{channel.publisher}.send.{channel.name}" in document["operations"]
        for consumer in channel.consumers:
            assert f"{consumer}.receive.{channel.name}" in document["operations"]
        if channel.message is not None:
            ref = document["components"]["messages"][channel.name]["payload"]["$ref"]
            assert (HERE / ref).exists()


def test_schemas_are_valid_json_schema_documents():
    for path in (HERE / "schemas").glob("*.json"):
        schema = json.loads(path.read_text())
        assert schema["$schema"].startswith("https://json-schema.org/")
        assert "$ref" in schema or "anyOf" in schema or "oneOf" in schema
