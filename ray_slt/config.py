"""Typed configuration: YAML files in ``conf/`` validated by pydantic schemas, with ``key=value`` overrides.

Every config file names its schema with a top-level ``kind`` (``prepare``, ``extract``, ``train``, ...),
directly or through a file it ``extends``: a config can extend base files and override their keys, so
near-identical configs are a base plus a small delta (:func:`read_config`). Schemas forbid unknown keys, so a
typo is an error that names the key (and suggests the closest one) instead of a silently ignored setting.
Overrides use dotted keys (``train.lr=2e-4``, ``lora.target_modules=[q_proj]``); the value is parsed as YAML
and then type-checked by the schema like the file itself.

Each stage defines its schema next to its code; :data:`CONFIG_KINDS` maps a kind to it, imported lazily so
that loading a config does not import the whole stack. A schema whose shape depends on the data (a training
config: its ``stage`` brings its own section) has a ``resolve_schema(data)`` classmethod that returns the class
to validate with.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ray_slt import storage
from ray_slt.errors import ConfigError
from ray_slt.registry import Registry

# kind -> "module:Class". Each stage registers its schema here.
CONFIG_KINDS = Registry(
    "config kind",
    {
        "prepare": "ray_slt.data.prepare:PrepareConfig",
        "serve": "ray_slt.serve.config:ServeConfig",
        "extract": "ray_slt.features.extract:ExtractConfig",
        "train": "ray_slt.training.config:TrainConfig",
        "vlm_cache": "ray_slt.models.vlm.cache:VLMCacheConfig",
        "tune": "ray_slt.tune.config:SweepConfig",
        "vlmbench": "ray_slt.vlmbench.config:BenchConfig",
    },
)


class Schema(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on construction."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), validate_default=True)


def schema_for(kind: str) -> type[Schema]:
    return CONFIG_KINDS.get(kind)


def _unwrap(annotation: Any) -> list[Any]:
    """The member types of an annotation, with Optional/Union/Annotated peeled off."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        out: list[Any] = []
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                out.extend(_unwrap(arg))
        return out
    return [annotation]


def _models(types: list[Any]) -> list[type[BaseModel]]:
    return [t for t in types if isinstance(t, type) and issubclass(t, BaseModel)]


def _key_path(model: type[BaseModel], dotted: str) -> list[str]:
    """The path ``dotted`` names in ``model``, as keys (a ConfigError naming it if it is not a settable key).

    A mapping of sections keyed by names that hold dots themselves (a sweep's ``space``, keyed by dotted paths
    of the training config) takes the parts up to the first one that is a field of its sections as one key:
    ``space.sft.lora.r`` -> ``["space", "sft.lora.r"]``, ``space.sft.lr_llm.grid`` ->
    ``["space", "sft.lr_llm", "grid"]``.
    """
    parts = dotted.split(".")
    current: list[Any] = [model]
    path: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        models = _models(current)
        mappings = [t for t in current if typing.get_origin(t) in (dict, Mapping) or t in (dict, Any)]
        if models:
            fields = {}
            for m in models:
                fields.update(m.model_fields)
            if part not in fields:
                where = ".".join(path) or "the top level"
                close = difflib.get_close_matches(part, list(fields), n=1)
                hint = f" (did you mean {'.'.join([*path, close[0]])!r}?)" if close else ""
                raise ConfigError(f"unknown key {dotted!r}: {where} has no field {part!r}{hint}")
            current = _unwrap(fields[part].annotation)
            j = i + 1
        elif mappings:
            args = typing.get_args(mappings[0])
            current = _unwrap(args[1]) if len(args) == 2 else [Any]
            j = i + 1
            sections = _models(current)
            if sections:
                inner = {f for m in sections for f in m.model_fields}
                while j < len(parts) and parts[j] not in inner:
                    j += 1
        else:
            raise ConfigError(f"unknown key {dotted!r}: {'.'.join(path)!r} is a value, not a section")
        path.append(".".join(parts[i:j]))
        i = j
    return path


def parse_overrides(overrides: Iterable[str]) -> list[tuple[str, Any]]:
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.lr=1e-4)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({e.problem})") from e
        parsed.append((key, value))
    return parsed


def _set_path(data: dict, parts: list[str], value: Any) -> None:
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _format_validation(e: ValidationError, source: str, overridden: Mapping[str, Any]) -> str:
    problems = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        origin = f" (from override {key}={overridden[key]!r})" if key in overridden else ""
        problems.append(f"{key or '<root>'}: {msg}{origin}")
    return f"{source}: " + "; ".join(problems)


def build_config(data: Mapping[str, Any], overrides: Sequence[str] = (), source: str = "<config>") -> Schema:
    """Validate a config mapping (with overrides applied) against the schema its ``kind`` names."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of keys to values at the top level")
    data = json.loads(json.dumps(dict(data)))  # deep copy, plain types
    kind = data.get("kind")
    if kind is None:
        raise ConfigError(f"{source}: missing 'kind' (one of {', '.join(sorted(CONFIG_KINDS))})")
    model = schema_for(kind)
    parsed = parse_overrides(overrides)
    resolve = getattr(model, "resolve_schema", None)
    if resolve is not None:  # a schema that depends on the data (a training config's stage section)
        top = {**data, **{key: value for key, value in parsed if "." not in key}}
        model = resolve(top)
    overridden = {}
    for key, value in parsed:
        if key == "kind":
            raise ConfigError(f"override {key}={value!r}: the kind of a config cannot be overridden")
        _set_path(data, _key_path(model, key), value)
        overridden[key] = value
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation(e, source, overridden)) from None


def _read_yaml(uri: str) -> dict[str, Any]:
    text = storage.read_text(uri)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{uri}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{uri}: expected a mapping of keys to values at the top level")
    return data


def merge(base: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``: mappings merge key by key (recursively), anything else (values, lists) is
    replaced; a ``null`` in the child replaces too."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config(uri: str, _chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """A config file as a mapping, with what it ``extends`` merged under it.

    ``extends: base.yaml`` (or a list, merged in order, later ones over earlier ones) names files relative to
    the extending file's folder (or absolute URIs); the file's own keys are merged over them (:func:`merge`).
    A base may extend others; a cycle is an error naming the chain."""
    key = storage.normalize(uri)
    if key in _chain:
        raise ConfigError(f"{uri}: extends itself ({' -> '.join([*_chain, key])})")
    data = _read_yaml(uri)
    bases = data.pop("extends", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{uri}: extends must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for base in bases:
        if "://" in base or os.path.isabs(base):
            path = base
        else:
            path = storage.join(storage.parent(uri), base)
        if not storage.exists(path):
            raise ConfigError(f"{uri}: extends {base}, which does not exist ({path})")
        merged = merge(merged, read_config(path, (*_chain, key)))
    return merge(merged, data)


def load_config(uri: str, overrides: Sequence[str] = ()) -> Schema:
    """Load and validate a YAML config file (local or remote), with the files it ``extends`` (see
    :func:`read_config`) and ``key=value`` overrides."""
    return build_config(read_config(uri), overrides, source=uri)


def config_dict(cfg: BaseModel) -> dict:
    return cfg.model_dump(mode="json")


def config_hash(cfg: BaseModel | Mapping[str, Any]) -> str:
    """A stable short hash of a config's values (recorded in outputs for provenance)."""
    data = config_dict(cfg) if isinstance(cfg, BaseModel) else dict(cfg)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(config_dict(cfg), sort_keys=False, allow_unicode=True)
