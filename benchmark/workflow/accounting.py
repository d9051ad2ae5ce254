"""The ``accounting`` section: the analytic cost tables (client FLOPs, bytes per round, memory) of every method
for each backbone and split point, at the runs' data size, without training (:mod:`benchmark.accounting`). A part
of :class:`benchmark.workflow.grid.Workflow`."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from benchmark.errors import ConfigError
from benchmark.method_catalog import federated_methods
from benchmark.overrides import set_args, yaml_scalar
from benchmark.workflow.names import ARCH_KEYS, METHOD_PARAMS, split_file, split_label
from benchmark.workflow.runs import WorkflowState


@dataclass(frozen=True)
class Accounting:
    """One analytic accounting table (all methods) for a backbone at a split point."""

    label: str
    """A backbone label (CPU-sized, trained) or a timm name (paper-scale, default resolution)."""
    split: tuple[int, int]
    trained: bool
    settings: tuple[tuple[str, Any], ...]
    samples_per_client: int
    num_classes: int
    method_params: tuple[tuple[str, Any], ...] = ()
    dataset: str | None = None
    """The dataset whose data size ``samples_per_client`` is (per-dataset accounting), or None."""
    """``("method.key", value)`` pairs: each method's own hyper-parameters from ``method_settings``."""

    @property
    def file(self) -> str:
        return split_file("accounting", self.label, self.split, "csv")


class AccountingSection(WorkflowState):
    """The accounting tables and the accounting rule's arguments."""


    def _accounting(self) -> list[Accounting]:
        acc = self.doc["accounting"]
        labels = acc.get("backbones", list(self.backbones))
        spc = acc["samples_per_client"]
        if spc == "auto":
            spc = self.run_samples_per_client()
        if isinstance(spc, dict):
            unknown = [d for d in spc if d not in self.datasets]
            if unknown:
                raise ConfigError(f"workflow config key 'accounting.samples_per_client.{unknown[0]}': not one of the "
                                  f"datasets ({', '.join(self.datasets)})")
            sizes = [(f".{d}", n, d) for d, n in spc.items()]
        else:
            sizes = [("", spc, None)]
        out = []
        for label in labels:
            trained = label in self.backbones
            arch = ({k: v for k, v in self._backbone_settings(label).items() if k != "model.weights"} if trained
                    else {"model.backbone": label, **{f"model.{k}": None for k in ARCH_KEYS[1:]}})
            for split in acc["splits"]:
                sets = {**arch, "model.weights": "scratch", "model.head_blocks": split[0],
                        "model.tail_blocks": split[1]}
                settings = self._resolve(f"accounting {label} {split_label(split)}", sets, keep=("model.", "train."))
                for suffix, n, dataset in sizes:
                    out.append(Accounting(label + suffix, tuple(split), trained, tuple(sorted(settings.items())), n,
                                          acc["num_classes"], self._method_params(), dataset))
        return out

    def _method_params(self) -> tuple[tuple[str, Any], ...]:
        """Each method's ``method_params`` from ``method_settings`` as ``("method.key", value)`` pairs."""
        return tuple(sorted((f"{m}.{k[len(METHOD_PARAMS):]}", v) for m, sets in self.doc["method_settings"].items()
                            for k, v in sets.items() if k.startswith(METHOD_PARAMS)))

    def run_samples_per_client(self) -> int:
        """Samples per client of the runs: the first dataset's train size over the first partition's clients."""
        dataset, partition = next(iter(self.datasets)), next(iter(self.partitions))
        data = {**self.base.get("data", {}), **self.datasets[dataset]}
        clients = self.partitions[partition].get("num_clients", self.base.get("partition", {}).get("num_clients", 10))
        if data.get("max_train_samples") is None:
            raise ConfigError("workflow config key 'accounting.samples_per_client': auto needs "
                              f"data.max_train_samples for {dataset!r}; give an integer instead")
        return max(1, int(data["max_train_samples"]) // int(clients))

    def accounting_entry(self, wc: Any) -> Accounting:
        return self.accounting[(wc.backbone, wc.split)]

    def accounting_args(self, wc: Any) -> str:
        a = self.accounting_entry(wc)
        method_sets = " ".join(f"--method-set {shlex.quote(f'{k}={yaml_scalar(v)}')}" for k, v in a.method_params)
        methods = ""
        if self.method_sources:  # the accounting process must import them: name every method, references too
            names = federated_methods() + [m for m in self.methods if m in self.method_sources]
            methods = "--methods " + " ".join(shlex.quote(self.source(m)) for m in dict.fromkeys(names))
        return (f"{set_args(dict(a.settings))} --samples-per-client {a.samples_per_client} "
                f"--num-classes {a.num_classes} {method_sets} {methods}").rstrip()

    def accounting_targets(self) -> list[str]:
        return [self.path(a.file) for a in self.accounting.values()]


__all__ = ["AccountingSection", "Accounting"]
