"""Every federated method and reference, registered on import: the one import point of the method registry.

As timm's ``models/__init__.py`` imports each model module so that ``@register_model`` fills the registry,
importing this module imports ``baselines`` (FedAvg, FedPrompt, SFL-V1, SFL-V2 and the references) and
:mod:`benchmark.sfprompt`. The base class (:mod:`benchmark.federation.method`) never imports its subclasses,
so the package has no import cycle. A method from outside the package (``module:Class``, ``path/file.py:Class``
or an entry point of the group ``sfprompt_bench.methods``) goes through the same factory
(:mod:`benchmark.method_refs`; docs/extending.md). Everything that needs "all methods" (the CLI, the accounting,
the report, the tests) asks :data:`METHODS` here instead of keeping a list of names.
"""

from __future__ import annotations

import dataclasses

import torch

import baselines  # noqa: F401  (registers fedavg, fedprompt, sfl_v1, sfl_v2 and the references)
import benchmark.sfprompt  # noqa: F401  (registers sfprompt)
from benchmark.config import RunConfig
from benchmark.data.federated import FederatedData
from benchmark.federation.method import METHODS, Method
from benchmark.method_refs import ENTRY_POINT_GROUP, resolve

__all__ = ["METHODS", "ENTRY_POINT_GROUP", "create_method", "method_class", "method_name",
           "resolve_config", "ordered", "federated_methods"]



def method_class(name: str) -> type[Method]:
    """The class ``name`` stands for: a registered name, a ``module:Class`` / ``path/file.py:Class`` reference
    or an entry point's name (resolved and registered on first use; a bad one raises one line)."""
    return resolve(name)


def method_name(spec: str) -> str:
    """The registry name of ``spec`` (a name, a reference or an entry point): what folders and tables use."""
    return method_class(spec).name


def create_method(cfg: RunConfig, data: FederatedData, device: torch.device | str = "cpu") -> Method:
    """The one factory: ``cfg.train.method`` (a name or a reference) resolved by :func:`method_class`."""
    return method_class(cfg.train.method)(cfg, data, device)


def resolve_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with ``method_params`` checked against the method's ``Params`` and every default filled in, so
    ``config.resolved.yaml`` and the config hash state each of the method's choices."""
    return dataclasses.replace(cfg, method_params=method_class(cfg.train.method).resolved_params(cfg))


def ordered(names=None) -> list[str]:
    """Method names in table order (the classes' ``order``, then name); all registered ones by default.
    Names that are not registered keep their given order, after the registered ones."""
    names = list(dict.fromkeys(METHODS.names() if names is None else names))
    known = sorted((n for n in names if n in METHODS), key=lambda n: (METHODS.get(n).order, n))
    return known + [n for n in names if n not in METHODS]


def federated_methods() -> list[str]:
    """The paper's federated methods (no references), in table order."""
    return [n for n in ordered() if not METHODS.get(n).reference]
