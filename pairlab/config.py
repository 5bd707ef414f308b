"""Dataclass configs that load from YAML and take CLI overrides.

Each config field documents itself with ``field(metadata={"help": ...})``; the CLI
and the README reuse that text. ``load_config(Cls, path, overrides)`` merges, in
order: dataclass defaults < YAML file < ``key=value`` overrides, and rejects
unknown keys by name before any work starts.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


def read_yaml(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        raise ConfigError(f"invalid YAML: {err}", file=str(path),
                          line=None if line is None else line + 1) from None


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, YAML-parsed value), so numbers/bools/lists come typed."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not key=value")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def field_help(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str, source: str | None) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if value is None:
        return None
    if origin is typing.Union or origin is types.UnionType:
        non_none = [a for a in args if a is not type(None)]
        for a in non_none:
            try:
                return _coerce(value, a, key, source)
            except ConfigError:
                continue
        raise ConfigError(f"bad value {value!r}", file=source, field=key)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, (str, int, float)):
        return str(value)
    if origin in (list, tuple) and isinstance(value, (list, tuple)):
        if origin is list and args and args[0] is not Any:
            return [_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
        return list(value) if origin is list else tuple(value)
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if tp is Any or tp is typing.Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, source=source, prefix=f"{key}.")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    expected = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"expected {expected}, got {value!r}", file=source, field=key)


def from_dict(cls: type[T], data: dict[str, Any], *, source: str | None = None,
              prefix: str = "") -> T:
    """Build ``cls`` from a dict, type-checking each field and rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping, got {type(data).__name__}", file=source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"unknown key; valid keys: {sorted(names)}", file=source,
                          field=prefix + unknown[0])
    kwargs = {k: _coerce(v, hints[k], prefix + k, source) for k, v in data.items()}
    return cls(**kwargs)


def load_config(cls: type[T], path: str | os.PathLike | None = None,
                overrides: list[str] | dict[str, Any] | None = None) -> T:
    """Defaults < YAML file < overrides (``["beta=0.2", ...]`` or a dict)."""
    data: dict[str, Any] = {}
    if path:
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("top level must be a mapping", file=str(path))
        data.update(loaded)
    if isinstance(overrides, dict):
        data.update(overrides)
    elif overrides:
        data.update(dict(parse_override(o) for o in overrides))
    return from_dict(cls, data, source=None if path is None else str(path))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
