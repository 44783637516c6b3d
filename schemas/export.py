"""Schemas for every language, generated from the pydantic records and the topic registry.

One JSON Schema (draft 2020-12) per topic record in `json/<topic>.schema.json`, and one AsyncAPI 3 document
(`asyncapi.yaml`) naming every topic, its key and its message, whose payloads point at those files. Nothing here is
written by hand: `gapstream schemas export` rewrites them from `schemas/records.py` and `schemas/topics.py`, and a
test fails while the committed files differ from what it would write.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterable, Optional

from schemas.records import REQUEST_ID_PATTERN, SCHEMA_VERSION
from schemas.topics import ALL_TOPICS, DEFAULT_PREFIX, TopicSpec

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
HERE = Path(__file__).resolve().parent

# Rules the records enforce in validators, which pydantic cannot put in a JSON Schema by itself.
_CONTROL_CHARS = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f]*$"
_REFINEMENTS: dict[str, dict[str, dict[str, Any]]] = {
    "ImageRequest": {
        "width": {"multipleOf": 8},
        "height": {"multipleOf": 8},
        "prompt": {"allOf": [{"pattern": "\\S"}, {"pattern": _CONTROL_CHARS}]},
    },
}

# Who reads and who writes a topic, from gapstream's side; a topic not named here is internal (both).
_DIRECTIONS: dict[str, tuple[str, ...]] = {
    "requests": ("receive",),
    "answers": ("receive",),
    "results": ("send",),
    "dead-letters": ("send",),
    "clarifications": ("send",),
}
_PUBLIC = {"requests", "answers", "results", "dead-letters", "clarifications"}


def _refine(definition: dict[str, Any], name: str) -> None:
    for field, extra in _REFINEMENTS.get(name, {}).items():
        prop = definition.get("properties", {}).get(field)
        if prop is None:
            continue
        # Optional fields are `anyOf: [<the type>, null]`: the rule belongs on the non-null branch.
        target = next((b for b in prop.get("anyOf", []) if b.get("type") != "null"), prop)
        target.update(copy.deepcopy(extra))


def topic_schema(spec: TopicSpec, prefix: str = DEFAULT_PREFIX) -> dict[str, Any]:
    schema = spec.record.model_json_schema(mode="validation")
    _refine(schema, spec.record.__name__)
    for name, definition in schema.get("$defs", {}).items():
        _refine(definition, name)
    head = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": spec.record.__name__,
        "description": (spec.record.__doc__ or spec.description).strip(),
        "x-gapstream-topic": spec.name(prefix),
        "x-gapstream-key": spec.key,
        "x-gapstream-schema-version": SCHEMA_VERSION,
    }
    body = {k: v for k, v in schema.items() if k not in ("title", "description")}
    return {**head, **body}


def schema_filename(spec: TopicSpec) -> str:
    return f"{spec.suffix}.schema.json"


def asyncapi_document(topics: Iterable[TopicSpec] = ALL_TOPICS, prefix: str = DEFAULT_PREFIX,
                      version: Optional[str] = None) -> dict[str, Any]:
    topics = tuple(topics)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in topics:
        message_name = spec.record.__name__
        channel_id = _identifier(spec.suffix)
        channels[channel_id] = {
            "address": spec.name(prefix),
            "title": spec.suffix,
            "description": f"{spec.description}. Keyed by `{spec.key}`, so one request's messages stay in order "
                           "on one partition.",
            "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
            "tags": [{"name": "public" if spec.suffix in _PUBLIC else "internal"}],
            "bindings": {"kafka": {"topic": spec.name(prefix), "bindingVersion": KAFKA_BINDING_VERSION}},
        }
        for action in _DIRECTIONS.get(spec.suffix, ("receive", "send")):
            operations[f"{action}{channel_id[0].upper()}{channel_id[1:]}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{message_name}"}],
            }
        messages[message_name] = {
            "name": message_name,
            "title": message_name,
            "summary": spec.description,
            "contentType": "application/json",
            "payload": {
                "schemaFormat": "application/schema+json;version=draft-2020-12",
                "schema": {"$ref": f"json/{schema_filename(spec)}"},
            },
            "bindings": {"kafka": {
                "key": {"type": "string", "pattern": REQUEST_ID_PATTERN,
                        "description": f"the record's `{spec.key}`"},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }},
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "gapstream",
            "version": version or _package_version(),
            "description": (
                "Agentic text-to-image as Kafka stream processors. Publish an `ImageRequest` (only request_id, "
                "user_id and prompt are required) keyed by its request_id to the requests topic; read exactly one "
                "`ResultRecord` per request from the results topic. Every record carries `schema_version`; "
                "consumers must ignore unknown fields. Topic names take the deployment's prefix "
                f"(GAPSTREAM_TOPIC_PREFIX, default `{DEFAULT_PREFIX}`)."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "the broker of docker-compose.yml; any Kafka that the workers use",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def _identifier(suffix: str) -> str:
    head, *rest = suffix.split("-")
    return head + "".join(part.capitalize() for part in rest)


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("gapstream")
    except Exception:  # a source checkout that was never installed
        return "0.0.0"


def render(topics: Iterable[TopicSpec] = ALL_TOPICS, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """Every generated file as {relative path: text}; the same input always gives the same bytes."""
    import yaml

    topics = tuple(topics)
    files = {
        f"json/{schema_filename(spec)}": json.dumps(topic_schema(spec, prefix), indent=2, ensure_ascii=False) + "\n"
        for spec in topics
    }
    document = asyncapi_document(topics, prefix)
    header = "# Generated by `gapstream schemas export` from schemas/records.py and schemas/topics.py; do not edit.\n"
    files["asyncapi.yaml"] = header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=120)
    return files


def stale(out: Path, files: dict[str, str]) -> list[str]:
    """Paths under `out` that are missing or differ from `files`, plus generated-looking files no topic has."""
    found = [path for path, text in files.items()
             if not (out / path).is_file() or (out / path).read_text(encoding="utf-8") != text]
    json_dir = out / "json"
    if json_dir.is_dir():
        found += [f"json/{p.name}" for p in sorted(json_dir.glob("*.schema.json")) if f"json/{p.name}" not in files]
    return found


def write(out: Path, files: dict[str, str]) -> list[str]:
    """Write what changed; remove schema files of topics that no longer exist. Returns the paths touched."""
    touched = stale(out, files)
    for path in touched:
        target = out / path
        if path in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[path], encoding="utf-8")
        else:
            target.unlink()
    return touched
