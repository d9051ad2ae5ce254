"""The workflow config's schema (``workflow/schemas/config.schema.yaml``): validation with defaults filled in and
one-line errors naming the offending key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from benchmark.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
"""The schema in a source checkout (the Snakefile passes its own copy explicitly)."""


def _validator(schema: dict):
    """A Draft 2020-12 validator that also fills in ``default`` values of absent properties."""
    base = jsonschema.Draft202012Validator

    def properties(validator, props, instance, schema):
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, props, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": properties})
    return cls(schema)


def _schema_error(error: Any) -> ConfigError:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in known]
        key = f"{path}.{extra[0]}" if path else str(extra[0]) if extra else path
        return ConfigError(f"unknown workflow config key {key!r}; valid keys{' in ' + path if path else ''}: "
                           f"{', '.join(known)}")
    if error.validator == "required":
        return ConfigError(f"workflow config {path or 'top level'}: {error.message}")
    if error.validator == "oneOf" and error.context:
        sub = min(error.context, key=lambda e: (-len(e.absolute_path), str(e.message)))
        sub_path = ".".join(str(p) for p in sub.absolute_path) or path
        return ConfigError(f"workflow config key {sub_path!r}: {sub.message}")
    return ConfigError(f"workflow config key {path or 'top level'!r}: {error.message}")


def validate_schema(raw: Mapping[str, Any], schema_path: str | Path | None = None) -> dict[str, Any]:
    """Validate ``raw`` against the schema; return a copy with defaults filled in.

    Raises:
        ConfigError: one line naming the first offending key.
    """
    schema = yaml.safe_load(Path(schema_path or SCHEMA_PATH).read_text())
    doc = json.loads(json.dumps(dict(raw)))  # plain, deep copy
    errors = list(_validator(schema).iter_errors(doc))
    if errors:
        raise _schema_error(jsonschema.exceptions.best_match(errors))
    return doc


__all__ = ["SCHEMA_PATH", "validate_schema"]
