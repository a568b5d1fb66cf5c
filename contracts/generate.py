"""Generate, from the catalogue, everything that must agree with it: the JSON Schemas, the
AsyncAPI 3.0 document, the stream and consumer declarations, and the NATS permissions.

`just contracts` (or `sinew contracts`) writes them under contracts/; a test fails when they are
stale. A released schema is never changed incompatibly: removing or retyping a field, or adding a
required one, is refused here and in the test. Publish a new major version side by side instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from . import CATALOGUE
from .catalogue import Catalogue, Channel
from .envelope import HEADER_DOCS

HERE = Path(__file__).parent
SITE = "{site}"


def schema_of(channel: Channel) -> dict[str, Any]:
    schema = msgspec.json.schema(channel.message)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://sinew.example/contracts/schemas/{channel.name}.json",
        "title": channel.name,
        "description": channel.summary,
        **schema,
    }


def schemas(catalogue: Catalogue) -> dict[str, dict]:
    return {c.name: schema_of(c) for c in catalogue.channels if c.message is not None}


def asyncapi(catalogue: Catalogue) -> dict[str, Any]:
    channels, operations, messages = {}, {}, {}
    for channel in catalogue.channels:
        message_name = _message_name(channel)
        messages[channel.name] = {
            "name": message_name,
            "title": channel.name,
            "summary": channel.summary,
            "contentType": channel.content_type,
            "headers": {"$ref": "#/components/schemas/Envelope"},
            **(
                {"payload": {"$ref": f"./schemas/{channel.name}.json"}}
                if channel.message
                else {
                    "payload": {
                        "type": "string",
                        "description": f"A {channel.content_type} document",
                    }
                }
            ),
            "x-max-bytes": channel.max_bytes,
        }
        channels[channel.name] = {
            "address": channel.subject(SITE),
            "title": channel.name,
            "description": channel.summary,
            "parameters": {"site": {"description": "Site code, e.g. north"}},
            "messages": {message_name: {"$ref": f"#/components/messages/{channel.name}"}},
            "x-stream": catalogue.stream_for(channel).name,
        }
        parties = [(channel.publisher, "send")]
        parties += [(c, "receive") for c in channel.consumers]
        parties += [(r, "receive") for r in channel.readers]
        for party, action in parties:
            operations[f"{party}.{action}.{channel.name}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel.name}"},
                "messages": [{"$ref": f"#/channels/{channel.name}/messages/{message_name}"}],
                "x-party": party,
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Sinew",
            "version": "1.0.0",
            "description": (
                "The NATS subjects of Sinew, one site at a time. Outside systems publish only to "
                "`sinew.ingress.{site}...`; services publish canonical events in their own domain. "
                "Every message carries the envelope headers; set Nats-Msg-Id = ce-id to a globally "
                "unique id (a UUID): JetStream drops a republished id within two minutes, and each "
                "service's inbox drops it after that."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "site": {
                "host": "localhost:4222",
                "protocol": "nats",
                "description": "A site's NATS server (one per facility)",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": {
                "Envelope": {
                    "type": "object",
                    "properties": {
                        k: {"type": "string", "description": v} for k, v in HEADER_DOCS.items()
                    },
                    "required": ["ce-id", "ce-source", "ce-type", "ce-time", "Nats-Msg-Id"],
                }
            },
        },
    }


def declarations(catalogue: Catalogue) -> dict[str, Any]:
    from sinew.common.provision import consumer_configs, readers_and_services, stream_configs

    return {
        "streams": [c.as_dict() for c in stream_configs(catalogue)],
        "consumers": {
            party: {
                stream: config.as_dict()
                for stream, config in consumer_configs(catalogue, party, SITE).items()
            }
            for party in readers_and_services(catalogue)
        },
    }


def permissions(catalogue: Catalogue) -> dict[str, Any]:
    from sinew.common.natsconfig import site_users

    return site_users(catalogue, [SITE])


def rendered(catalogue: Catalogue = CATALOGUE) -> dict[str, str]:
    """Every generated file, by path relative to contracts/."""
    files = {f"schemas/{name}.json": _json(schema) for name, schema in schemas(catalogue).items()}
    files["asyncapi.json"] = _json(asyncapi(catalogue))
    files["generated/streams.json"] = _json(declarations(catalogue))
    files["generated/permissions.json"] = _json(permissions(catalogue))
    return files


def compatibility_problems(released: dict, current: dict, where: str = "$") -> list[str]:
    """How `current` would break a consumer or producer written against `released`."""
    return _compare(released, current, released, current, where)


def _resolve(node: dict, root: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _compare(old: Any, new: Any, old_root: dict, new_root: dict, where: str) -> list[str]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    problems: list[str] = []
    if "properties" in old:
        new_props = new.get("properties", {})
        for field, old_field in old["properties"].items():
            if field not in new_props:
                problems.append(f"{where}.{field}: removed")
            else:
                problems += _compare(
                    old_field, new_props[field], old_root, new_root, f"{where}.{field}"
                )
        for field in set(new.get("required", [])) - set(old.get("required", [])):
            problems.append(f"{where}.{field}: newly required")
        return problems
    for alternatives in ("anyOf", "oneOf"):
        if alternatives in old:
            for n, option in enumerate(old[alternatives]):
                if all(
                    _compare(option, candidate, old_root, new_root, where)
                    for candidate in new.get(alternatives, [new])
                ):
                    problems.append(f"{where}: alternative {n} no longer accepted")
            return problems
    if "enum" in old and not set(old["enum"]) <= set(new.get("enum", old["enum"])):
        problems.append(f"{where}: enum values removed")
    for key in (
        "type",
        "format",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "const",
    ):
        if old.get(key) != new.get(key):
            problems.append(f"{where}: {key} changed from {old.get(key)!r} to {new.get(key)!r}")
    if "items" in old:
        problems += _compare(old["items"], new.get("items", {}), old_root, new_root, f"{where}[]")
    if "prefixItems" in old:
        for n, item in enumerate(old["prefixItems"]):
            problems += _compare(
                item, new.get("prefixItems", [{}] * (n + 1))[n], old_root, new_root, f"{where}[{n}]"
            )
    return problems


def _message_name(channel: Channel) -> str:
    name = getattr(channel.message, "__name__", None)
    return name or "".join(w.title() for w in f"{channel.entity}-{channel.event}".split("-"))


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def incompatible(files: dict[str, str], root: Path = HERE) -> list[str]:
    problems = []
    for path, text in files.items():
        if path.startswith("schemas/") and (root / path).exists():
            released = json.loads((root / path).read_text())
            problems += [f"{path}: {p}" for p in compatibility_problems(released, json.loads(text))]
    return problems


def stale(files: dict[str, str], root: Path = HERE) -> list[str]:
    wanted = set(files)
    on_disk = {str(p.relative_to(root)) for p in (root / "schemas").glob("*.json")}
    problems = [
        f"{p}: missing or out of date"
        for p, text in files.items()
        if not (root / p).exists() or (root / p).read_text() != text
    ]
    problems += [f"{p}: no channel generates it any more" for p in sorted(on_disk - wanted)]
    return problems


def write(root: Path = HERE, catalogue: Catalogue = CATALOGUE) -> list[str]:
    """Write every generated file; refuse if a released schema would change incompatibly."""
    files = rendered(catalogue)
    problems = incompatible(files, root)
    if problems:
        raise SystemExit(
            "incompatible contract changes (publish a new major version instead):\n  "
            + "\n  ".join(problems)
        )
    changed = []
    for path, text in files.items():
        target = root / path
        if not target.exists() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            changed.append(path)
    return changed
