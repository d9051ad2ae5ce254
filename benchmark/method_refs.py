"""Methods from outside the package: ``module:Class``, ``path/to/file.py:Class`` and installed entry points.

Like timm's ``create_model``, one lookup serves every source (:func:`benchmark.methods.method_class` calls
:func:`resolve`):

* a **registered name** (``fedavg``, ``sfprompt``, ...);
* a **reference** ``module.path:Class`` (the module importable from ``sys.path``: add its folder to
  ``PYTHONPATH``; ``python -m benchmark`` also puts the working folder on it) or ``path/to/file.py:Class`` (a
  file, relative to the working folder or absolute; no ``PYTHONPATH`` needed);
* the name of an **entry point** in the group ``sfprompt_bench.methods`` of an installed package
  (``[project.entry-points."sfprompt_bench.methods"] fedprox = "mypkg.fedprox:FedProx"``).

A resolved class is registered in :data:`~benchmark.federation.method.METHODS` under its name: the one it
registered itself with (``@register_method``), else its own ``name`` class attribute, else its class name in
lower case (an entry point: the entry point's name). From then on the process knows it by that name: tables,
run folders and ``method_settings`` use the name; a run config's ``train.method`` keeps the reference so that
any process can resolve it again. Each bad reference is one line (:class:`~benchmark.errors.ConfigError`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from benchmark.errors import ConfigError, UnknownNameError
from benchmark.federation.method import METHODS, Method, register_method

ENTRY_POINT_GROUP = "sfprompt_bench.methods"
"""The entry-point group an installed package lists its methods in (name = the method's name)."""


def is_reference(spec: str) -> bool:
    """Whether ``spec`` is a ``module:Class`` / ``file.py:Class`` reference rather than a name."""
    return ":" in spec


def resolve(spec: str) -> type[Method]:
    """The method class ``spec`` names (a registered name, a reference or an entry point), registered."""
    if spec in METHODS:
        return METHODS.get(spec)
    if is_reference(spec):
        return _register(repr(spec), _load_reference(spec), None)
    eps = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if spec in eps:
        return _register(f"entry point {spec!r} ({eps[spec].value})", _load_entry_point(eps[spec]), spec)
    valid = ", ".join(sorted(set(METHODS.names()) | set(eps)))
    raise UnknownNameError(f"unknown method {spec!r}; valid: {valid}, or a reference 'module:Class' or "
                           f"'path/to/file.py:Class'")


def _load_reference(spec: str) -> object:
    source, _, attr = spec.rpartition(":")
    if not source or not attr.isidentifier():
        raise ConfigError(f"method {spec!r}: a reference is 'module.path:Class' or 'path/to/file.py:Class'")
    module = _load_file(spec, Path(source)) if source.endswith(".py") else _import(spec, source)
    if not hasattr(module, attr):
        raise ConfigError(f"method {spec!r}: {source!r} has no attribute {attr!r}")
    return getattr(module, attr)


def _import(spec: str, module: str) -> object:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"method {spec!r}: module {exc.name!r} not found (put its folder on PYTHONPATH, or "
                          f"name the file: 'path/to/file.py:Class')") from None


def _load_file(spec: str, path: Path) -> object:
    """Execute a method file once per process, as a module named after its absolute path (so the same file
    reached by two spellings is one module and registers once)."""
    if not path.is_file():
        raise ConfigError(f"method {spec!r}: file {str(path)!r} does not exist")
    resolved = path.resolve()
    name = f"sfprompt_bench_methods.{resolved.stem}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
    if name not in sys.modules:
        loader_spec = importlib.util.spec_from_file_location(name, resolved)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def _load_entry_point(ep: EntryPoint) -> object:
    try:
        return ep.load()
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"method entry point {ep.name!r} ({ep.value}) does not load: {exc}") from None


def _register(what: str, obj: object, name: str | None) -> type[Method]:
    """Register ``obj`` (checked to be a Method subclass) under ``name``, its own name, or its class name."""
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise ConfigError(f"method {what}: not a subclass of benchmark.federation.method.Method")
    own = obj.__dict__.get("name") or None
    if name and own and own != name:
        raise ConfigError(f"method {what}: the class calls itself {own!r}, not {name!r}; make them agree")
    name = name or own or obj.__name__.lower()
    if name in METHODS:
        if METHODS.get(name) is obj:
            return obj
        other = METHODS.get(name)
        raise ConfigError(f"method {what}: its name {name!r} clashes with the registered method "
                          f"{other.__module__}.{other.__qualname__}; set another `name` on the class")
    if name != name.lower() or not name.isidentifier():
        raise ConfigError(f"method {what}: its name {name!r} must be a lowercase identifier (set `name` on the "
                          f"class)")
    return register_method(name)(obj)
