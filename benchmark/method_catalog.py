"""The built-in methods by name, with their ``Params``, without importing torch: what a workflow's parse needs.

Every Snakemake process parses the Snakefile (a dry run, ``--lint``, ``--report``, the main process, each cluster
job step), and the parse checks every method a profile names and every run's ``method_params``
(:mod:`benchmark.workflow`). Through the method registry (:mod:`benchmark.methods`) that imports torch, pandas
and the model code: about 2.5 s of a 3.5 s parse on the 2-core machines, for classes the parse never builds.
So the parse asks this module: a built-in method's name is its own and its ``Params`` are in :data:`BUILTIN`
(the dataclasses live in the torch-free :mod:`benchmark.federation.params`); anything else (a ``module:Class``
or ``path/file.py:Class`` reference, an entry point's name, an unknown name) goes to the registry, which imports
the method's class and with it torch, as before.

:data:`BUILTIN` repeats what the registry knows; ``tests/test_methods.py`` checks that it names exactly the
registered built-in methods, each with its class's ``Params``, so a new built-in method fails that test until it
is added here.
"""

from __future__ import annotations

from typing import Any

from benchmark.config import RunConfig, build_section
from benchmark.federation.params import NoParams, SFPromptParams, SplitFedParams

BUILTIN: dict[str, type] = {
    "fedavg": NoParams,
    "fedprompt": NoParams,
    "sfl_v1": SplitFedParams,
    "sfl_v2": SplitFedParams,
    "sfprompt": SFPromptParams,
    "linear_probe": NoParams,
}
"""Registry name -> ``Params`` of every method of the package (:mod:`baselines`, :mod:`benchmark.sfprompt`)."""


def method_name(spec: str) -> str:
    """The registry name of ``spec`` (:func:`benchmark.methods.method_name`); a built-in name without the
    registry."""
    if spec in BUILTIN:
        return spec
    from benchmark.methods import method_name as resolve_name  # deferred: the registry imports torch

    return resolve_name(spec)


def method_params(cfg: RunConfig) -> Any:
    """``cfg.method_params`` checked against the ``Params`` of ``cfg.train.method``
    (:meth:`benchmark.federation.method.Method.params`); a built-in method's without the registry. Raises
    :class:`~benchmark.errors.ConfigError` (one line) for an unknown key or a bad value."""
    if cfg.train.method in BUILTIN:
        return build_section(BUILTIN[cfg.train.method], cfg.method_params, "method_params.")
    from benchmark.methods import method_class  # deferred: the registry imports torch

    return method_class(cfg.train.method).params(cfg)


def federated_methods() -> list[str]:
    """:func:`benchmark.methods.federated_methods` (every registered federated method, in table order). The
    workflow asks only when a profile names a method from outside the package, whose class the parse has already
    imported."""
    from benchmark.methods import federated_methods as registered  # deferred: the registry imports torch

    return registered()
