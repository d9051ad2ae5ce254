"""The runs core of the workflow: a run and its settings, resolved from the profile's layers (RunConfig defaults <
``run`` < backbone and cell < method settings < variant overrides), the grid's expansion into runs, and the train
rule's lookups.

A cell is (backbone, dataset, partition, seed); its candidates are the methods, then each section's variants
(:mod:`.strength`, :mod:`.privacy` add theirs). Candidates of one cell whose resolved settings are identical are run
once, carrying every role (a sensitivity point ``keep_ratio: 1.0`` *is* the ``no_pruning`` ablation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from benchmark.config import RunConfig, check_split_depth, from_dict
from benchmark.errors import ConfigError
from benchmark.method_catalog import method_params
from benchmark.overrides import flatten, set_args, unflatten
from benchmark.workflow.names import (POOLED, POOLED_PARTITION, RUNNER_UP, SENSITIVITY_KEYS, UNDER_STUDY, Role,
                                      split_label, tuning_file, variant_name)

DEFAULT_RESOURCES = {"threads": 1, "mem_mb": 2000, "runtime": 60, "gpu": 0}

Candidate = tuple[str, dict[str, Any], Role]
"""(method, overrides, role): one way a cell's run enters the grid; its variant name is :func:`variant_name`."""


def where_error(where: str, exc: ConfigError) -> ConfigError:
    """A config error located in the workflow (``run B/D/P/V/seedS``, ``tuning ...``)."""
    return ConfigError(f"workflow config {where}: {exc}")


@dataclass(frozen=True)
class Run:
    """One training run of the grid."""

    backbone: str
    dataset: str
    partition: str
    variant: str
    seed: int
    method: str
    settings: tuple[tuple[str, Any], ...]
    """The run's RunConfig as ``(dotted key, value)`` pairs that differ from RunConfig's defaults."""
    roles: tuple[Role, ...]
    lr_from: str | None = None
    """The tuning record (relative to ``results``) whose chosen learning rate the run trains with, or None."""
    lr_pick: str = "chosen"
    """Which of the record's rates: ``chosen``, or ``runner_up`` for the recheck runs (``tuning.recheck``)."""

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.backbone, self.dataset, self.partition, self.variant, self.seed)

    @property
    def dir(self) -> str:
        """Run folder, relative to the results root."""
        return f"runs/{self.backbone}/{self.dataset}/{self.partition}/{self.variant}/seed{self.seed}"

    @property
    def partition_file(self) -> str:
        return f"partitions/{self.dataset}/{self.partition}/seed{self.seed}.json"

    @property
    def split(self) -> tuple[int, int]:
        """(head_blocks, tail_blocks)."""
        cfg = dict(self.settings)  # the keys that differ from RunConfig's defaults
        model = RunConfig().model
        return (cfg.get("model.head_blocks", model.head_blocks), cfg.get("model.tail_blocks", model.tail_blocks))

    def config(self) -> RunConfig:
        return from_dict(unflatten(dict(self.settings)))


class WorkflowState:
    """The attributes :class:`benchmark.workflow.grid.Workflow` sets in its ``__init__``, shared by every part."""

    doc: dict[str, Any]
    """The validated workflow config (defaults filled in)."""
    results: str
    seeds: list[int]
    base: dict[str, Any]
    """The profile's ``run`` section: every run's base settings."""
    backbones: dict[str, dict[str, Any]]
    datasets: dict[str, dict[str, Any]]
    partitions: dict[str, dict[str, Any]]
    methods: list[str]
    method_sources: dict[str, str]
    references: dict[str, dict[str, Any]]
    tuning_section: dict[str, Any] | None
    privacy: dict[str, Any]
    runs: dict[tuple, Run]
    tuning: dict[tuple[str, str, str], Any]
    """(backbone, dataset, search) -> :class:`benchmark.workflow.tuning.Tuning`."""
    accounting: dict[tuple[str, str], Any]
    """(label, split label) -> :class:`benchmark.workflow.accounting.Accounting`."""
    privacy_cases: dict[str, list[dict[str, Any]]]


class RunsCore(WorkflowState):
    """Settings resolution, the grid's expansion and the train rule's lookups (a part of
    :class:`benchmark.workflow.grid.Workflow`, whose ``__init__`` sets the attributes used here)."""


    # ------------------------------------------------------------------ settings
    def method_sets(self, method: str) -> dict[str, Any]:
        """A method's ``method_settings`` (optimiser keys and its own ``method_params.*``)."""
        return dict(self.doc["method_settings"].get(method, {}))

    def _cache_dir(self) -> dict[str, Any]:
        return {} if "cache_dir" in self.base.get("data", {}) else {"data.cache_dir": f"{self.results}/cache"}

    def _backbone_settings(self, label: str) -> dict[str, Any]:
        b = self.backbones[label]
        out = {f"model.{k}": v for k, v in b["model"].items()}
        weights = b["weights"]
        out["model.weights"] = f"file:{self.results}/backbones/{label}.safetensors" if weights == "pretrain" else weights
        return out

    def _resolve(self, where: str, *layers: Mapping[str, Any], keep: tuple[str, ...] = ("",)) -> dict[str, Any]:
        """Flat RunConfig (defaults < base run < layers), validated; only the keys that differ from defaults
        and start with one of ``keep`` (a job's params hold only what its output depends on)."""
        flat = flatten(self.base)
        flat.update(self._cache_dir())
        for layer in layers:
            flat.update(layer)
        try:
            cfg = from_dict(unflatten(flat))
            if cfg.method_params:  # a method's own keys: checked against its Params
                method_params(cfg)
        except ConfigError as exc:
            raise where_error(where, exc) from None
        resolved, defaults = flatten(cfg.to_dict()), flatten(RunConfig().to_dict())
        return {k: v for k, v in resolved.items() if k.startswith(keep) and (
            defaults.get(k) != v or k in ("data.dataset", "train.method"))}

    def resolve_run(self, where: str, backbone: str, *layers: Mapping[str, Any]) -> dict[str, Any]:
        """A run's settings (:meth:`_resolve`) whose split fits the backbone's depth."""
        settings = self._resolve(where, *layers)
        depth = self.backbones[backbone]["model"].get("depth")
        if depth is not None:  # else timm's default depth, checked when the model is built
            check_split_depth(settings.get("model.head_blocks", 1), settings.get("model.tail_blocks", 1), depth,
                              where=f"workflow config {where}: ")
        return settings

    def _cell_settings(self, backbone: str, dataset: str, partition: str, seed: int) -> dict[str, Any]:
        return {**self._backbone_settings(backbone), "data.dataset": dataset,
                **{f"data.{k}": v for k, v in self.datasets[dataset].items()},
                **{f"partition.{k}": v for k, v in self._partition_spec(partition).items()}, "seed": seed}

    def _partition_spec(self, partition: str) -> dict[str, Any]:
        return POOLED_PARTITION if partition == POOLED and self.references else self.partitions[partition]

    def _in_scope(self, block: str, backbone: str, dataset: str, partition: str, seed: int) -> bool:
        scope = self.doc[block].get("scope", {})
        return all(v in scope.get(axis, [v]) for axis, v in
                   (("backbones", backbone), ("datasets", dataset), ("partitions", partition), ("seeds", seed)))

    # ------------------------------------------------------------------ the grid
    def _candidates(self, cell: tuple) -> Iterator[Candidate]:
        """(method, overrides, role) of one cell: the methods first, then the ablations and sensitivity points of
        the method under study, the strength points and the noise defence's runs."""
        for m in self.methods:
            yield m, self.method_sets(m), Role("method", m)
        studied = self.method_sets(UNDER_STUDY)
        if self._in_scope("ablations", *cell):
            for name, sets in self.doc["ablations"].get("variants", {}).items():
                yield UNDER_STUDY, {**studied, **sets}, Role("ablation", name)
        if self._in_scope("sensitivity", *cell):
            for param, keys in SENSITIVITY_KEYS.items():
                for value in self.doc["sensitivity"].get(param, []):
                    sets = dict(zip(keys, value if param == "split" else [value]))
                    yield UNDER_STUDY, {**studied, **sets}, Role(
                        "sensitivity", param, split_label(value) if param == "split" else value)
        yield from self._strength_candidates(cell)
        yield from self._noise_candidates(cell)
        yield from self._recheck_candidates(cell)

    def _expand(self) -> list[Run]:
        runs: list[Run] = []
        for backbone in self.backbones:
            for dataset in self.datasets:
                for partition in self.partitions:
                    for seed in self.seeds:
                        runs += self._cell_runs(backbone, dataset, partition, seed)
                for seed in self.seeds:
                    runs += self._reference_runs(backbone, dataset, seed)
        return runs

    def _cell_runs(self, backbone: str, dataset: str, partition: str, seed: int) -> list[Run]:
        """The runs of one cell; candidates with identical settings share one run (and carry every role)."""
        cell = (backbone, dataset, partition, seed)
        base = self._cell_settings(*cell)
        by_config: dict[tuple, list] = {}
        for method, sets, role in self._candidates(cell):
            variant = variant_name(role, method)
            where = f"run {backbone}/{dataset}/{partition}/{variant}/seed{seed}"
            settings = self.resolve_run(where, backbone, base, {"train.method": self.source(method)}, sets)
            # a recheck run has its method's settings but trains at another rate, read from the tuning record
            ident = (tuple(sorted(settings.items())), RUNNER_UP if role.kind == RUNNER_UP else "chosen")
            if ident in by_config:
                by_config[ident][2].append(role)
            else:
                by_config[ident] = [variant, method, [role]]
        return [Run(backbone, dataset, partition, variant, seed, method, settings, tuple(roles),
                    self._lr_from(backbone, dataset, method), pick)
                for (settings, pick), (variant, method, roles) in by_config.items()]

    def _reference_runs(self, backbone: str, dataset: str, seed: int) -> list[Run]:
        """The pooled-data references of one (backbone, dataset, seed): each method's own settings apply."""
        if not self.references:
            return []
        base = self._cell_settings(backbone, dataset, POOLED, seed)
        out = []
        for name, ref in self.references.items():
            method, role = ref["method"], Role("reference", name, ref.get("label", name))
            where = f"run {backbone}/{dataset}/{POOLED}/{variant_name(role, method)}/seed{seed}"
            settings = self.resolve_run(where, backbone, base, {"train.method": self.source(method)},
                                        self.method_sets(method))
            lr_from = None if self.tuning_section is None else tuning_file(backbone, dataset, name)
            out.append(Run(backbone, dataset, POOLED, variant_name(role, method), seed, method,
                           tuple(sorted(settings.items())), (role,), lr_from))
        return out

    # ------------------------------------------------------------------ lookups used by the rules
    def run(self, wc: Any) -> Run:
        key = (wc.backbone, wc.dataset, wc.partition, wc.variant, int(wc.seed))
        if key not in self.runs:
            raise ConfigError(f"no run {'/'.join(map(str, key))} in this workflow config")
        return self.runs[key]

    def path(self, rel: str) -> str:
        return f"{self.results}/{rel}"

    def train_args(self, wildcards: Any) -> str:
        """The run's ``--set`` arguments (a Snakemake param: a change reruns the run)."""
        return set_args(dict(self.run(wildcards).settings))

    @staticmethod
    def weights_arg(wildcards: Any, input: Any) -> str:  # noqa: A002 (Snakemake's argument name)
        """``--set model.weights=file:<input>`` for pre-trained backbones: the rule's input path, which is a
        local copy when Snakemake stages files from remote storage (Kubernetes). Derived from the input, so
        Snakemake tracks it through the input file, not as a parameter."""
        return set_args({"model.weights": f"file:{input.weights}"}) if "weights" in input.keys() else ""

    @staticmethod
    def cpus(wildcards: Any, threads: int) -> int:
        """The ``cpus`` resource of a job: its threads (locally capped at the host's cores, see common.smk)."""
        return threads

    @staticmethod
    def run_dir(wildcards: Any, output: Any) -> str:
        """The train rule's ``--out``: the folder of its ``metrics.csv`` output."""
        return str(Path(output.metrics).parent)

    @staticmethod
    def results_dir(wildcards: Any, input: Any) -> str:  # noqa: A002 (Snakemake passes it by this name)
        """The report rules' ``--results``: the folder of their ``grid.json`` input."""
        return str(Path(input.grid).parent)

    def train_input(self, wc: Any) -> dict[str, str]:
        run = self.run(wc)
        out = {"partition": self.path(run.partition_file), "cache": self.cache_file(run.config())}
        if self.backbones[run.backbone]["weights"] == "pretrain":
            out["weights"] = self.path(f"backbones/{self.checkpoint_of(run)}.safetensors")
        if run.lr_from:
            out["tuning"] = self.path(run.lr_from)
        return out

    def resources(self, rule: str) -> dict[str, int]:
        res = self.doc["resources"]
        return {**DEFAULT_RESOURCES, **res.get("default", {}), **res.get(rule, {})}

    def run_targets(self) -> list[str]:
        return [self.path(f"{r.dir}/metrics.csv") for r in self.runs.values()]

    def partition_targets(self) -> list[str]:
        return sorted({self.path(r.partition_file) for r in self.runs.values()})


__all__ = ["Run", "RunsCore", "WorkflowState", "Candidate", "DEFAULT_RESOURCES", "where_error"]
