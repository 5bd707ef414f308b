"""Dataclass configs that load from YAML and take CLI overrides.

Each config field documents itself with ``field(metadata={"help": ...})``; the CLI
and the README reuse that text. ``load_config(Cls, path, overrides)`` merges, in
order: dataclass defaults < YAML file < ``key=value`` overrides, and rejects
unknown keys by name before any work starts.

Numeric fields declare their range in the same metadata, and the loader checks it
(so a bad value fails at load time, before any data is read or model loaded)::

    beta: float = field(default=0.1, metadata={"help": "...", "gt": 0})
    top_p: float = field(default=0.95, metadata={"help": "...", "gt": 0, "max": 1})

``min``/``max`` are inclusive bounds, ``gt``/``lt`` exclusive ones. Every float must be
finite (``.nan`` and ``.inf`` are refused) unless the metadata says ``"finite": False``.
The message names the dotted field (``lora.r: must be >= 1, got -4``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import types
import typing
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (safe_load keeps the last,
    silently: ``beta: 0.1`` then ``beta: 0.5`` further down would win without a word)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice (first on line {first})", key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file (safe loading only, a key given twice refused); every way it can fail is a
    one-line ConfigError."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", file=str(path)) from None
    except PermissionError:
        raise ConfigError("permission denied", file=str(path)) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"not valid UTF-8 ({err.reason})", file=str(path),
                          line=_utf8_error_line(path, err)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(f"invalid YAML: {_yaml_problem(err)}", file=str(path),
                          line=None if mark is None else mark.line + 1) from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """The one-line gist of a YAML error (its ``str`` spans several lines with a caret)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    text = problem or str(err).splitlines()[0]
    return text if mark is None else f"{text} at column {mark.column + 1}"


def _utf8_error_line(path: str | os.PathLike, err: UnicodeDecodeError) -> int | None:
    # The text reader decodes in chunks, so err.start is not a file offset: find it again.
    try:
        data = open(path, "rb").read()
        data.decode("utf-8")
    except UnicodeDecodeError as again:
        return data[:again.start].count(b"\n") + 1
    except OSError:
        pass
    return None


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` -> (key, YAML-parsed value), so numbers/bools/lists come typed."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' is not key=value", field=text,
                          hint="e.g. --set dpo.beta=0.2")
    key, value = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has no key", hint="e.g. --set dpo.beta=0.2")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"cannot parse the value {value!r}: {_yaml_problem(err)}", field=key,
                          hint="values are YAML: quote a string that holds [ ] { } : or #") from None


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data["a"]["b"] = value`` for ``"a.b"``, creating (or replacing non-mapping) parents."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def cli_overrides(texts: list[str] | None, cls: type | None = None, *, flag: str = "--set") -> dict[str, Any]:
    """The one override grammar of every command with a config: repeatable ``--set dotted.key=VALUE``.

    Returns ``{dotted key: YAML value}`` for :func:`load_config` / :func:`apply_overrides`.
    A mapping value for a config *section* of ``cls`` (a nested config, or a free-form
    ``dict[str, Any]`` such as an ablation's ``train``), e.g. ``--set train={dpo: {beta: 0.2}}``
    (the old top-level-only spelling), would replace the whole section and silently drop the
    file's other keys there, so it is refused with the dotted form as the hint. A mapping for
    a typed map field (``topics={arithmetic: 1.0}``) is that field's value and is kept.
    """
    out: dict[str, Any] = {}
    for text in texts or []:
        key, value = parse_override(text)
        if isinstance(value, dict) and value and cls is not None and _is_section(cls, key):
            leaf_key, leaf = next(dotted_leaves(value, f"{key}."))
            raise ConfigError(f"{flag} {key}=<mapping> would replace the whole `{key}` section",
                              field=key, hint=f"set one field at a time with dotted keys, e.g. "
                                              f"{flag} {leaf_key}={_yaml_inline(leaf)}")
        out[key] = value
    return out


def _is_section(cls: type, dotted: str) -> bool:
    """Whether ``dotted`` names a nested config or a ``dict[str, Any]`` section of ``cls``."""
    tp: Any = cls
    for part in dotted.split("."):
        if not dataclasses.is_dataclass(tp):
            return False
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return False
        tp = hints[part]
        if typing.get_origin(tp) is typing.Union or typing.get_origin(tp) is types.UnionType:
            tp = next((a for a in typing.get_args(tp) if a is not type(None)), tp)
    if dataclasses.is_dataclass(tp):
        return True
    return typing.get_origin(tp) is dict and typing.get_args(tp)[1:2] in ((Any,), ())


def dotted_leaves(data: dict[str, Any], prefix: str = ""):
    """``{"dpo": {"beta": 0.1}}`` -> ``("dpo.beta", 0.1)``, ...: each setting named as ``--set`` names it."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from dotted_leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _yaml_inline(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def apply_overrides(data: dict[str, Any], overrides: list[str] | dict[str, Any] | None,
                    cls: type | None = None) -> dict[str, Any]:
    """Merge overrides into a loaded config mapping (in place): ``["dpo.beta=0.2", ...]`` (the
    CLI's ``--set``, see :func:`cli_overrides`) or ``{"dpo.beta": 0.2, "seeds": [0, 1]}``;
    a dotted key sets one nested field and keeps its siblings."""
    items = overrides.items() if isinstance(overrides, dict) else cli_overrides(overrides, cls).items()
    for key, value in items:
        set_dotted(data, key, value)
    return data


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
        if len(args) == 2 and args[1] is not Any:  # typed values: {topic: weight}
            return {k: _coerce(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
        return dict(value)
    if tp is Any or tp is typing.Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, source=source, prefix=f"{key}.")
    if isinstance(tp, type) and isinstance(value, tp) and not (isinstance(value, bool) and tp is not bool):
        return value
    expected = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"expected {expected}, got {value!r}", file=source, field=key)


def _nullable(tp: Any) -> bool:
    if tp is Any or tp is type(None):
        return True
    origin = typing.get_origin(tp)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(tp)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


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
    missing = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in data
               and _default(f) is dataclasses.MISSING]
    if missing:
        raise ConfigError("missing required key", file=source, field=prefix + missing[0])
    for f in dataclasses.fields(cls):  # null only where the field may be null
        if f.name in data and data[f.name] is None and not _nullable(hints[f.name]) and _default(f) is not None:
            default = _default(f)
            shown = f" (default {default!r})" if not dataclasses.is_dataclass(default) and default != {} else ""
            raise ConfigError(f"must not be null{shown}", file=source, field=prefix + f.name,
                              hint="give a value, or leave the key out for the default")
    kwargs = {k: _coerce(v, hints[k], prefix + k, source) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            check_range(kwargs[f.name], f.metadata, prefix + f.name, source=source)
    return cls(**kwargs)


# ---------------------------------------------------------------- ranges

RANGE_KEYS = ("min", "gt", "max", "lt")


def range_text(rule: typing.Mapping[str, Any]) -> str:
    """``{"min": 0, "max": 1}`` -> ``in [0, 1]``; ``{"gt": 0}`` -> ``> 0``; '' when unbounded."""
    low = ("[", rule["min"]) if "min" in rule else ("(", rule["gt"]) if "gt" in rule else None
    high = (rule["max"], "]") if "max" in rule else (rule["lt"], ")") if "lt" in rule else None
    if low and high:
        return f"in {low[0]}{low[1]:g}, {high[0]:g}{high[1]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]:g}"
    if high:
        return f"{'<=' if high[1] == ']' else '<'} {high[0]:g}"
    return ""


def check_range(value: Any, rule: typing.Mapping[str, Any], key: str, *,
                source: str | None = None) -> None:
    """Raise ConfigError naming ``key`` when a number breaks ``rule`` (see module doc).

    Lists are checked element by element (``sample_seeds[1]``); non-numbers and None pass
    (their type was checked by the loader).
    """
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_range(item, rule, f"{key}[{i}]", source=source)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value) and rule.get("finite", True):
        raise ConfigError(f"must be a finite number, got {value}", file=source, field=key)
    ok = (("min" not in rule or value >= rule["min"]) and ("gt" not in rule or value > rule["gt"])
          and ("max" not in rule or value <= rule["max"]) and ("lt" not in rule or value < rule["lt"]))
    if not ok and value not in rule.get("allow", ()):
        allowed = "".join(f" or {a}" for a in rule.get("allow", ()))
        raise ConfigError(f"must be {range_text(rule)}{allowed}, got {value:g}", file=source, field=key)


def check_ranges(cfg: Any, *, prefix: str = "", source: str | None = None) -> Any:
    """Check every field of a config instance (nested dataclasses too) against its range.

    For configs built in code rather than loaded (``CurateConfig(max_length=0)``); their
    ``validate()`` calls this. Returns ``cfg``.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_ranges(value, prefix=f"{prefix}{f.name}.", source=source)
        else:
            check_range(value, f.metadata, prefix + f.name, source=source)
    return cfg


def load_config(cls: type[T], path: str | os.PathLike | None = None,
                overrides: list[str] | dict[str, Any] | None = None) -> T:
    """Defaults < YAML file < overrides (``["dpo.beta=0.2", ...]`` or a dict; dotted keys set
    nested fields, see :func:`apply_overrides`)."""
    data: dict[str, Any] = {}
    if path:
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("top level must be a mapping", file=str(path))
        data.update(loaded)
    keys = list(overrides) if isinstance(overrides, dict) else list(cli_overrides(overrides, cls))
    apply_overrides(data, overrides, cls)
    source = None if path is None else str(path)
    with blame_overrides(keys, source=source):
        cfg = from_dict(cls, data, source=source)
        validate = getattr(cfg, "validate", None)
        if callable(validate):  # the config's own checks, named after where the value was set
            validate()
    return cfg


@contextlib.contextmanager
def blame_overrides(keys: typing.Iterable[str], *, source: str | None = None):
    """A ConfigError about a field an override set (``--set``, or a command's own flag) names no
    file: the YAML file did not set it. One that names no file otherwise is ``source``'s (the YAML
    file the value came from). An ablation arm's field (``arms.NAME.train.dpo.beta``) matches the
    override of the shared section (``train.dpo.beta``)."""
    import re

    try:
        yield
    except ConfigError as err:
        field = err.field or ""
        for name in {field, re.sub(r"^arms\.[^.]+\.", "", field)}:
            for key in keys:
                if name and (name == key or name.startswith((key + ".", key + "[")) or key.startswith(name + ".")):
                    if err.file is None or err.file != source:
                        raise
                    raise type(err)(err.message, field=err.field, hint=err.hint) from None
        if err.file is None and source is not None:
            raise type(err)(err.message, file=source, line=err.line, field=err.field, hint=err.hint) from None
        raise


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
