"""The ``key=value`` language of config overrides, shared by the CLI, the workflow and the tools.

* ``section.key=value`` (``--set``): a :class:`~benchmark.config.RunConfig` key in dotted form and a YAML
  scalar (``3``, ``0.5``, ``null``): :func:`parse_overrides`, written back by :func:`yaml_scalar` / :func:`set_args`.
* dotted dicts and nested dicts: :func:`flatten` and :func:`unflatten` turn one into the other.
* method overrides, one parser for both spellings (:func:`parse_method_override`): ``METHOD.KEY=VALUE`` sets one of
  the method's own ``method_params`` (``--method-set``), ``METHOD:SECTION.KEY=VALUE,...`` a variant of the method
  with any run-config keys (``--methods`` of ``python -m benchmark.perf`` and ``system calibrate``).
"""

from __future__ import annotations

import functools
import json
import math
import shlex
from typing import Any, Iterable, Mapping

import yaml

from benchmark.errors import ConfigError

METHOD_PARAMS = "method_params."
"""Prefix of a method's own hyper-parameters among the run-config keys."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``section.key=value`` strings; values are read as YAML scalars (``3``, ``0.5``, ``null``)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


def apply_overrides(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of the nested ``raw`` with dotted ``overrides`` set (sections created as needed)."""
    out = json.loads(json.dumps(raw))  # deep copy of plain data
    for dotted, value in overrides.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"config key {dotted!r}: {part!r} is not a section")
            node = nxt
        node[parts[-1]] = value
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}`` (an empty section disappears)."""
    return {k: v for key, value in tree.items() for k, v in (
        flatten(value, f"{prefix}{key}.").items() if isinstance(value, Mapping) else [(f"{prefix}{key}", value)])}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 0.1}`` -> ``{"train": {"lr": 0.1}}`` (a later key may replace an earlier section)."""
    return apply_overrides({}, flat)


def _float_text(value: float) -> str:
    """``repr`` in YAML 1.1's float syntax: a dot in the mantissa and a signed exponent (1e-05 -> 1.0e-05)."""
    mant, e, exp = repr(value).partition("e")
    if not e:
        return mant
    return f"{mant if '.' in mant else mant + '.0'}e{exp if exp[0] in '+-' else '+' + exp}"


def yaml_scalar(value: Any) -> str:
    """A string that ``yaml.safe_load`` (the CLI's ``--set`` parser) reads back as exactly ``value``. Remembered per
    (type, value): the check parses the text back, and a workflow's parse writes ~14,000 of them (the paper profile:
    2.7 s of its parse)."""
    try:
        return _yaml_scalar(type(value), value)
    except TypeError:  # unhashable (a list): not remembered
        return _yaml_scalar.__wrapped__(type(value), value)


@functools.lru_cache(maxsize=65536)
def _yaml_scalar(kind: type, value: Any) -> str:
    """:func:`yaml_scalar`; ``kind`` keeps 1, 1.0 and True apart (equal as keys)."""
    if isinstance(value, float) and math.isfinite(value):
        text = _float_text(value)
    else:
        text = json.dumps(value) if value is None or isinstance(value, (bool, int)) else str(value)
    readable = text != "" and text.strip() == text and yaml.safe_load(text) == value
    return text if readable else json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def set_args(overrides: Mapping[str, Any]) -> str:
    """Shell-quoted ``--set key=value`` arguments, in key order."""
    return " ".join(f"--set {shlex.quote(f'{k}={yaml_scalar(v)}')}" for k, v in sorted(overrides.items()))


def parse_method_override(spec: str) -> tuple[str, dict[str, Any]]:
    """One method override -> ``(method, run-config overrides)``; the one parser of both spellings.

    * ``METHOD``: the method, no overrides.
    * ``METHOD:SECTION.KEY=VALUE,...``: a variant of the method with any run-config keys
      (``sfprompt:method_params.keep_ratio=1.0,model.prompt_len=0``).
    * ``METHOD.KEY=VALUE``: one of the method's own parameters, ``method_params.KEY``
      (``sfprompt.keep_ratio=0.25`` -> ``("sfprompt", {"method_params.keep_ratio": 0.25})``).

    The colon form is recognised by a ``:`` before the first ``=`` (a bare ``METHOD:`` is the method alone).
    """
    key = spec.split("=", 1)[0]
    if ":" in key:
        name, _, extra = spec.partition(":")
        return name, parse_overrides([kv for kv in extra.split(",") if kv])
    if "=" not in spec:
        return spec, {}
    name, dot, param = key.strip().partition(".")
    if not (name and dot and param):
        raise ConfigError(f"method override {spec!r} must look like METHOD.KEY=VALUE or "
                          f"METHOD:SECTION.KEY=VALUE,...")
    return name, {METHOD_PARAMS + param: parse_overrides([spec])[key.strip()]}


def method_sets(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``--method-set`` items -> each method's own parameters: ``["sfprompt.keep_ratio=0.25"]`` ->
    ``{"sfprompt": {"keep_ratio": 0.25}}`` (:func:`parse_method_override`; only ``method_params`` keys)."""
    per_method: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--method-set {item!r} must look like METHOD.KEY=VALUE")
        name, over = parse_method_override(item)
        for key, value in over.items():
            if not key.startswith(METHOD_PARAMS):
                raise ConfigError(f"--method-set {item!r} sets {key!r}; it sets a method's own parameters only "
                                  f"(METHOD.KEY=VALUE, KEY one of its method_params)")
            per_method.setdefault(name, {})[key[len(METHOD_PARAMS):]] = value
    return per_method
