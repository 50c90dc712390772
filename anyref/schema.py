"""Config dataclasses from JSON, checked: unknown keys, wrong types and missing sections get an AnyRefConfigError."""
from __future__ import annotations

import dataclasses
import math
import types
import typing

from .errors import AnyRefConfigError

JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "an integer",
              float: "a number", type(None): "null"}


def build(cls, data, *, source: str, key: str = ""):
    """A `cls` dataclass from a JSON object: every key known, every value of its field's type and every section (a
    dataclass-valued field) present; other fields left out take their defaults (older files lack newer fields).

    `source` names the file in messages, `key` the section being read ("" for the top level).
    """
    where = f"{source}: {key or 'the top level'}"
    if not isinstance(data, dict):
        raise AnyRefConfigError(f"{where} must be a JSON object of {cls.__name__} fields, got {_json_type(data)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise AnyRefConfigError(f"{where} has unknown key(s) {unknown}; the known keys are {sorted(names)}")
    missing = [name for name in names if name not in data and dataclasses.is_dataclass(hints[name])]
    if missing:
        raise AnyRefConfigError(f"{where} lacks the section(s) {missing}; a config file holds every section: write "
                                "it with AnyRefConfig.save(path), or copy the section from a preset's config")
    return cls(**{name: check_value(value, hints[name], source=source, key=f"{key}.{name}".lstrip("."))
                  for name, value in data.items()})


def check_value(value, annotation, *, source: str, key: str):
    """`value` as a field of type `annotation` takes it (an integer for a float, a list for a tuple), or an error
    that names the key and the type it needs."""
    if dataclasses.is_dataclass(annotation):
        return value if isinstance(value, annotation) else build(annotation, value, source=source, key=key)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return check_value(value, option, source=source, key=key)
            except AnyRefConfigError:
                continue
    elif tuple in (origin, annotation):
        if isinstance(value, (list, tuple)):
            if len(args) != 2 or args[1] is not Ellipsis:
                return tuple(value)
            return tuple(check_value(v, args[0], source=source, key=f"{key}[{i}]") for i, v in enumerate(value))
    elif _matches(value, annotation):
        return float(value) if annotation is float else value
    raise AnyRefConfigError(f"{source}: {key} must be {describe(annotation)}, got {value!r} ({_json_type(value)}); "
                            "correct it in the file")


def _matches(value, annotation) -> bool:
    """Whether a JSON value fits a scalar field type (bool is no int; a float must be finite)."""
    if annotation is type(None):
        return value is None
    if annotation is bool or annotation is str:
        return isinstance(value, annotation)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return not isinstance(annotation, type) or isinstance(value, annotation)


def describe(annotation) -> str:
    """A field type in words: "an integer", "a string or null", "a list of integers"."""
    if dataclasses.is_dataclass(annotation):
        return f"an object of {annotation.__name__} fields"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {describe(args[0]).split(' ', 1)[1]}s"  # "an integer" -> "a list of integers"
        return "a list"
    if annotation is float:
        return "a finite number"
    return JSON_TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _json_type(value) -> str:
    return JSON_TYPES.get(type(value), type(value).__name__)
