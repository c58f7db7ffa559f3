"""JSON Schema of the TOML dialect, generated from the key table and the schedule specs.

Editors (taplo / "Even Better TOML") read it through a `#:schema` first line and then complete
keys, show their docs and flag typos. Sections: the ones we write list their own keys first (for
completion); any section may hold any key, as in kohya. Per `lr_scheduler` value an if/then
constrains `lr_scheduler_args` (list or table) to that schedule's parameters, when both sit in the
same section (the loader checks them wherever they are).
"""

from __future__ import annotations

import json
from typing import Any

from lora_sched.config.keys import KEYS, SECTIONS, Key
from lora_sched.config.kohya_keys import kohya_key_names
from lora_sched.schedules.spec import Param, ScheduleSpec, all_names, all_specs

SCHEMA_ID = "https://lora-sched.invalid/lora_sched.schema.json"
_DURATION = {
    "anyOf": [
        {"type": "integer", "minimum": 0},
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*(ba|ep|sp|dur|%)\s*$"},
    ]
}


def _bounds(obj: Any, out: dict[str, Any]) -> dict[str, Any]:
    if obj.low is not None:
        out["exclusiveMinimum" if obj.low_open else "minimum"] = obj.low
    if obj.high is not None:
        out["exclusiveMaximum" if obj.high_open else "maximum"] = obj.high
    return out


def key_schema(key: Key) -> dict[str, Any]:
    kind = key.kind
    if kind == "float":
        out = _bounds(key, {"type": "number"})
    elif kind == "floats":
        number = _bounds(key, {"type": "number"})
        out = {"anyOf": [number, {"type": "array", "items": number}]}
    elif kind == "int":
        out = _bounds(key, {"type": "integer"})
        if key.multiple_of:
            out["multipleOf"] = key.multiple_of
    elif kind == "bool":
        out = {"type": "boolean"}
    elif kind in ("str", "path", "optimizer"):
        out = {"type": "string"} if key.allow_empty else {"type": "string", "minLength": 1}
        if key.name == "lr_scheduler":
            out = {"type": "string", "enum": all_names()}
    elif kind == "choice":
        out = {"type": "string", "enum": list(key.choices)}
    elif kind == "duration":
        out = dict(_DURATION)
    elif kind == "resolution":
        out = {
            "anyOf": [
                _bounds(key, {"type": "integer", "multipleOf": key.multiple_of or 1}),
                {"type": "string", "pattern": r"^\s*\d+\s*,\s*\d+\s*$"},
            ]
        }
    elif kind == "kv_list":
        out = {"type": "array", "items": {"type": "string", "pattern": r"^\s*[^=\s][^=]*="}}
    else:  # sched_args
        out = {
            "anyOf": [
                {"type": "array", "items": {"type": "string", "pattern": r"^\s*[^=\s][^=]*="}},
                {"type": "object", "additionalProperties": {"not": {"type": "object"}}},
            ]
        }
    out["description"] = key.doc
    if key.default not in (None, [], {}):
        out["default"] = key.default
    return out


def param_schema(param: Param) -> dict[str, Any]:
    kind = param.kind
    if kind == "float":
        out = _bounds(param, {"type": "number"})
    elif kind == "int":
        out = _bounds(param, {"type": "integer"})
    elif kind == "bool":
        out = {"type": "boolean"}
    elif kind == "choice":
        out = {"type": "string", "enum": list(param.choices)}
    elif kind == "str":
        out = {"type": "string"}
    elif kind == "duration":
        out = dict(_DURATION)
    else:
        out = {"type": "array", "items": _DURATION}
    out["description"] = param.doc
    return out


def _arg_names(spec: ScheduleSpec) -> list[str]:
    return [n for p in spec.params for n in (p.name, *p.aliases)]


def _args_rule(spec: ScheduleSpec) -> dict[str, Any]:
    names = _arg_names(spec)
    table = {
        "type": "object",
        "properties": {n: param_schema(p) for p in spec.params for n in (p.name, *p.aliases)},
        "additionalProperties": False,
    }
    if names:
        pattern = r"^\s*(" + "|".join(names) + r")\s*="
        listed: dict[str, Any] = {"type": "array", "items": {"type": "string", "pattern": pattern}}
    else:
        listed = {"type": "array", "maxItems": 0}
    return {"anyOf": [listed, table]}


def section_schema() -> dict[str, Any]:
    """What any section may hold: our keys, sd-scripts' unused ones, and per-schedule argument rules."""
    props: dict[str, Any] = {k.name: key_schema(k) for k in KEYS}
    for name in sorted(kohya_key_names() - props.keys()):
        props[name] = {"description": "sd-scripts option not used by lora_sched (kept for sd-scripts)"}
    rules = []
    for spec in all_specs():
        for name in (spec.name, *spec.aliases):
            rules.append(
                {
                    "if": {
                        "properties": {"lr_scheduler": {"const": name}},
                        "required": ["lr_scheduler"],
                        "not": {"required": ["lr_scheduler_type"]},  # a torch class takes its own args
                    },
                    "then": {"properties": {"lr_scheduler_args": _args_rule(spec)}},
                }
            )
    return {"type": "object", "properties": props, "additionalProperties": False, "allOf": rules}


def build_schema() -> dict[str, Any]:
    """The whole JSON Schema (draft-07, which taplo understands)."""
    section = section_schema()
    top_props: dict[str, Any] = {name: {"$ref": "#/definitions/section"} for name in SECTIONS}
    # kohya also reads keys written outside any section
    for key in KEYS:
        top_props.setdefault(key.name, key_schema(key))
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "lora_sched config (kohya-ss sd-scripts compatible TOML)",
        "description": "Generated by `lora-sched schema` from the key table and the schedule specs.",
        "type": "object",
        "definitions": {"section": section},
        "properties": top_props,
        "additionalProperties": {"$ref": "#/definitions/section"},
    }


def schema_text() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"
