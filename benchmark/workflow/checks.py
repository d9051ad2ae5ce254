"""The workflow config's cross-key checks beyond its schema: method names through the registry, datasets as
declarations, what the ``run`` section, backbones, references, ``method_settings``, ablations and scopes may set.
Every failure is one line naming the key (a part of :class:`benchmark.workflow.grid.Workflow`)."""

from __future__ import annotations

from typing import Any, Mapping

from benchmark.config import from_dict
from benchmark.data.datasets import spec_from_config
from benchmark.errors import ConfigError
from benchmark.method_catalog import method_name
from benchmark.overrides import flatten
from benchmark.workflow.names import (ARCH_KEYS, ARCH_SETTINGS, METHOD_PARAMS, POOLED, SENSITIVITY_KEYS, STRENGTH,
                                      UNDER_STUDY)
from benchmark.workflow.runs import WorkflowState

GRID_KEYS = ("seed", "threads", "data.dataset", "train.method", "model.backbone", "model.weights",
             "partition.scheme", "method_params")
"""Keys the grid sets; the base ``run`` section may not."""
VARIANT_FORBIDDEN = ("seed", "threads", "data.", "partition.", "train.method", "model.weights") + ARCH_SETTINGS
"""Variants share a cell's partition and backbone, so they may not change data, partition or architecture."""
OPTIMISER_KEYS = ("train.lr", "train.momentum", "train.weight_decay", "train.grad_clip")
"""The optimiser keys ``method_settings`` may set; besides them only the method's own ``method_params.*``.
Anything else that changes cost belongs in ``run``, so the analytic accounting (one config for every method, plus
each method's own parameters) describes the runs."""


class ConfigChecks(WorkflowState):
    """The profile's checks and the method-name registry lookups."""


    def _check_datasets(self) -> None:
        """Every dataset is a preset or a valid declaration (``source`` and friends); reads no data."""
        for name, entry in self.datasets.items():
            data = {**self.base.get("data", {}), **entry, "dataset": name}
            try:
                spec_from_config(from_dict({"data": data}).data)
            except ConfigError as exc:
                raise ConfigError(f"workflow config key 'datasets.{name}': {exc}") from None

    def _method_name(self, where: str, spec: str) -> str:
        """The registry name of a profile's method entry (a name, a reference or an entry point), checked
        through the registry; a reference is remembered in :attr:`method_sources`."""
        try:
            name = method_name(spec)
        except ConfigError as exc:
            raise ConfigError(f"workflow config key '{where}': {exc}") from None
        if self.method_sources.get(name, spec) != spec and name != spec:
            raise ConfigError(f"workflow config key '{where}': {spec!r} and {self.method_sources[name]!r} are "
                              f"both named {name!r}")
        if name != spec:
            self.method_sources[name] = spec
        return name

    def source(self, method: str) -> str:
        """What a run of ``method`` (a registry name) sets as ``train.method``: its reference, if it has one."""
        return self.method_sources.get(method, method)

    def _check_sections(self) -> None:
        self._check_datasets()
        for method in self.doc["method_settings"]:
            if self._method_name(f"method_settings.{method}", method) != method:
                raise ConfigError(f"workflow config key 'method_settings.{method}': name the method by its "
                                  f"registry name ({self._method_name('method_settings', method)!r})")
        flat = flatten(self.base)
        for key in flat:
            if key in GRID_KEYS or key.startswith(METHOD_PARAMS):
                raise ConfigError(f"workflow config key 'run.{key}' is set by the grid (seeds, datasets, "
                                  f"partitions, backbones, methods, resources.*.threads; a method's own "
                                  f"method_params go in method_settings.<method>); remove it")
        for name, b in self.backbones.items():
            extra = [k for k in b["model"] if k not in ARCH_KEYS]
            if extra:
                raise ConfigError(f"workflow config key 'backbones.{name}.model.{extra[0]}': a backbone holds only "
                                  f"{', '.join(ARCH_KEYS)}; put split and prompt keys in run.model")
            if "backbone" not in b["model"]:
                raise ConfigError(f"workflow config key 'backbones.{name}.model.backbone' is required (a timm ViT name)")
        if POOLED in self.partitions:
            raise ConfigError(f"workflow config key 'partitions.{POOLED}': the label is reserved for the reference "
                              f"runs on the pooled data (references.pooled); rename the partition")
        for name in self.references:
            if name in self.methods or name in self.doc["ablations"].get("variants", {}):
                raise ConfigError(f"workflow config key 'references.pooled.{name}': a reference may not be named "
                                  f"like a method or an ablation")
        for method, sets in self.doc["method_settings"].items():
            bad = [k for k in sets if k not in OPTIMISER_KEYS and not k.startswith(METHOD_PARAMS)]
            if bad:
                raise ConfigError(f"workflow config key 'method_settings.{method}.{bad[0]}': method_settings may set "
                                  f"{', '.join(OPTIMISER_KEYS)} and {METHOD_PARAMS}* only; other cost-relevant keys "
                                  f"belong in run")
        for name, sets in self.doc["ablations"].get("variants", {}).items():
            self._check_variant(f"ablations.variants.{name}", sets)
            if name in self.methods:
                raise ConfigError(f"workflow config key 'ablations.variants.{name}': a variant may not be named "
                                  f"like a method")
        for block in ("ablations", "sensitivity", STRENGTH):
            scope = self.doc[block].get("scope", {})
            for axis, known in (("backbones", self.backbones), ("datasets", self.datasets),
                                ("partitions", self.partitions), ("seeds", self.seeds)):
                for item in scope.get(axis, []):
                    if item not in known:
                        raise ConfigError(f"workflow config key '{block}.scope.{axis}': {item!r} is not one of "
                                          f"{', '.join(map(str, known))}")
        if UNDER_STUDY not in self.methods and (self.doc["ablations"].get("variants") or any(
                self.doc["sensitivity"].get(k) for k in SENSITIVITY_KEYS)):
            raise ConfigError(f"workflow config: ablations and sensitivity are variants of the method under study; "
                              f"add {UNDER_STUDY} to methods (their tables compare against it)")
        self.checkpoint_pcts()  # one set of checkpoint outputs for the pretrain rule

    @staticmethod
    def _check_variant(where: str, sets: Mapping[str, Any]) -> None:
        for key in sets:
            if key.startswith(VARIANT_FORBIDDEN) or key in VARIANT_FORBIDDEN:
                raise ConfigError(f"workflow config key '{where}.{key}': variants share their cell's data, "
                                  f"partition and backbone, so they may not set it")


__all__ = ["ConfigChecks", "GRID_KEYS", "OPTIMISER_KEYS", "VARIANT_FORBIDDEN"]
