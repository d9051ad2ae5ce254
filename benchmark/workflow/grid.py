"""The Snakemake workflow's logic: validate its config, expand the run grid, and format each rule's CLI call.

The ``Snakefile`` is a table of contents; every rule is one ``python -m benchmark <verb>`` line whose
arguments come from here. This module composes the workflow's parts, one module per concern as the rules are
one file per concern (``workflow/rules/*.smk``): :mod:`.names` (roles, variant and file names: what the report
may import), :mod:`.schema`, :mod:`.checks`, :mod:`.runs` (settings resolution, the grid, the train rule),
:mod:`.tuning`, :mod:`.strength`, :mod:`.privacy`, :mod:`.accounting`, :mod:`.system`, :mod:`.data` (cache,
partition, pretrain). A new section is a new module (a mixin of :class:`Workflow`) and a new ``.smk`` file. A workflow config (``config/{smoke,default,paper}.yaml``) is checked against
``workflow/schemas/config.schema.yaml`` (one-line errors naming the key), then every run's
:class:`~benchmark.config.RunConfig` is built, so a bad config fails before any job starts.

The grid is backbones x datasets x partitions x seeds x variants. A *variant* is a method (its name), a named
SFPrompt ablation (``ablations.variants``), a one-at-a-time sensitivity point (``sensitivity``), each a
method plus RunConfig overrides, or a backbone-strength point (``strength``): a method fine-tuning a checkpoint
saved part-way along the backbone's pre-training (``{method}@{pct}``, the run's backbone label unchanged). Runs
of one cell whose resolved configs are identical are run once: a sensitivity point ``keep_ratio: 1.0`` *is* the
``no_pruning`` ablation and reuses its run, carrying both roles, and a strength point at 100% *is* the method's
run of the main grid. Paths (relative to ``results``)::

    cache/{dataset}-{size}px.safetensors                 (cache: decoded once; data.cache_dir if set)
    backbones/{backbone}.{safetensors,json}              (pretrain; only for weights: pretrain; copied from the
                                                          machine-wide backbone cache, see backbone_cache)
    backbones/{backbone}@{pct}.{safetensors,json}        (pretrain: the same trajectory at pct % of its epochs,
                                                          per pretrain.checkpoints < 1; card: test_accuracy)
    partitions/{dataset}/{partition}/seed{seed}.json     (shared by every backbone and variant)
    runs/{backbone}/{dataset}/{partition}/{variant}/seed{seed}/   (train)
    runs/{backbone}/{dataset}/{partition}/{method}@{pct}/seed{seed}/  (train: strength point; fine-tunes
                                                         backbones/{backbone}@{pct}, pct% of pre-training)
    accounting/{backbone}_h{H}t{T}.csv                   (accounting; no training)
    privacy/{backbone}_h{H}t{T}.{csv,npz}                (privacy: reconstruction attacks per split point)
    tuning/{backbone}/{dataset}/{method}/x{multiplier}/seed{seed}/  (a learning-rate grid point, validation; by
                                                          the tune job of its search)
    tuning/{backbone}/{dataset}/{method}.json            (tune: the search's choice; benchmark.tuning)
    grid.json, tables/, figures/, manifest.json          (report)

A run's settings reach the CLI as ``--set section.key=value`` arguments (the difference from RunConfig's
defaults), so they are Snakemake ``params``: editing the config reruns exactly the jobs whose settings changed.
With a ``tuning`` section, every run also reads its (backbone, dataset, method)'s tuning record as an input
and trains with its chosen learning rate (``train --lr-from``; :mod:`benchmark.tuning`).
"""


from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from benchmark.backbone_cache import default_cache_dir
from benchmark.errors import ConfigError
from benchmark.workflow.accounting import Accounting, AccountingSection
from benchmark.workflow.checks import ConfigChecks
from benchmark.workflow.data import DataSection
from benchmark.workflow.names import FIGURE_FORMATS, FIGURES, TABLE_FORMATS, TABLES, split_label
from benchmark.workflow.privacy import PrivacySection, case_runs
from benchmark.workflow.runs import Run, RunsCore
from benchmark.workflow.schema import validate_schema
from benchmark.workflow.strength import StrengthSection
from benchmark.workflow.system import SystemSection
from benchmark.workflow.tuning import Tuning, TuningSection


class Workflow(ConfigChecks, TuningSection, StrengthSection, PrivacySection, AccountingSection, SystemSection,
               DataSection, RunsCore):
    """A validated workflow config and its expanded grid. Build with :func:`load_workflow`."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.results: str = doc["results"]
        self.seeds: list[int] = list(doc["seeds"])
        self.base: dict[str, Any] = doc["run"]
        self.backbones: dict[str, dict[str, Any]] = doc["backbones"]
        ds = doc["datasets"]
        self.datasets: dict[str, dict[str, Any]] = {d: {} for d in ds} if isinstance(ds, list) else {
            d: dict(v or {}) for d, v in ds.items()}
        self.partitions: dict[str, dict[str, Any]] = doc["partitions"]
        self.method_sources: dict[str, str] = {}
        """Registry name -> ``module:Class`` / ``file.py:Class`` reference of each method from outside the
        package (what its runs' ``train.method`` holds, so the train process can import it)."""
        self.methods: list[str] = [self._method_name(f"methods.{i}", m) for i, m in enumerate(doc["methods"])]
        self.references: dict[str, dict[str, Any]] = {
            name: {**ref, "method": self._method_name(f"references.pooled.{name}.method", ref["method"])}
            for name, ref in doc["references"].get("pooled", {}).items()}
        self.backbone_cache: str = str(Path(doc["backbone_cache"]).expanduser()) if doc.get("backbone_cache") \
            else str(default_cache_dir())
        """The pretrain rule's ``--cache-dir`` (config key ``backbone_cache``; default: the environment's)."""
        self.tuning_section: dict[str, Any] | None = doc.get("tuning")
        self.privacy: dict[str, Any] = doc["privacy"]
        self._check_sections()
        self._check_strength()
        self._check_tuning()
        self.runs: dict[tuple, Run] = {r.key: r for r in self._expand()}
        self.tuning: dict[tuple[str, str, str], Tuning] = {
            (t.backbone, t.dataset, t.search): t for t in self._tuning()}
        self.accounting: dict[tuple[str, str], Accounting] = {
            (a.label, split_label(a.split)): a for a in self._accounting()}
        self.system: dict[str, Any] = self._system_settings()
        self.privacy_cases: dict[str, list[dict[str, Any]]] = self._privacy_cases()

    def table_targets(self) -> list[str]:
        return [self.path(f"tables/{t}.{fmt}") for t in self.tables() for fmt in TABLE_FORMATS]

    def figure_targets(self, formats: Iterable[str] = FIGURE_FORMATS) -> list[str]:
        return [self.path(f"figures/{f}.{x}") for f in self.figures() for x in formats]

    def _role_kinds(self) -> set[str]:
        """The run roles of the grid, plus ``tuning`` when learning rates are tuned (the tuning table)."""
        return {role.kind for r in self.runs.values() for role in r.roles} | ({"tuning"} if self.tuning else set())

    def tables(self) -> list[str]:
        """The tables this grid renders: those whose required run role occurs in it."""
        kinds = self._role_kinds()
        return [t for t, need in TABLES.items() if need is None or need in kinds]

    def figures(self) -> list[str]:
        kinds = self._role_kinds()
        return [f for f, need in FIGURES.items() if need is None or need in kinds]

    def report_outputs(self, kind: str) -> list[tuple[str, str | None]]:
        """(path, caption file relative to workflow/rules/ or None) of the ``tables`` or ``figures`` rule: the
        CSV of each table and the PNG of each figure go into ``snakemake --report`` with their caption."""
        if kind == "tables":
            return [(p, f"../report/table_{Path(p).stem}.rst" if p.endswith(".csv") else None)
                    for p in self.table_targets()]
        return [(p, f"../report/figure_{Path(p).stem}.rst" if p.endswith(".png") else None)
                for p in self.figure_targets()]

    def final_targets(self) -> list[str]:
        """What ``all`` asks for: the report and, explicitly, everything behind it. Snakemake does not recreate
        a missing intermediate file whose dependents are up to date, so the runs, partitions, backbones and
        accounting tables are targets too: deleting one run folder reruns that run, then the report."""
        return (self.table_targets() + self.figure_targets() + [self.path("manifest.json")] + self.run_targets()
                + self.partition_targets() + self.accounting_targets() + self.system_targets()
                + self.privacy_targets() + self.tuning_targets()
                + [self.path(f"backbones/{b}.safetensors") for b in self.pretrained()]
                + [f for b in self.pretrained() for f in self.checkpoint_files(b)])

    # ------------------------------------------------------------------ what the report reads
    def grid(self) -> dict[str, Any]:
        """Everything the report needs, paths relative to ``results`` (written to ``grid.json``)."""
        return {
            "format": 1,
            "config": self.doc,
            "runs": [{"backbone": r.backbone, "dataset": r.dataset, "partition": r.partition, "variant": r.variant,
                      "seed": r.seed, "method": r.method, "dir": r.dir, "partition_file": r.partition_file,
                      "roles": [role.to_dict() for role in r.roles], "settings": dict(r.settings),
                      "lr_from": r.lr_from, **({} if r.lr_pick == "chosen" else {"lr_pick": r.lr_pick})}
                     for r in self.runs.values()],
            "accounting": [{"label": a.label, "split": split_label(a.split), "head_blocks": a.split[0],
                            "tail_blocks": a.split[1], "trained": a.trained, "file": a.file,
                            "samples_per_client": a.samples_per_client, "settings": dict(a.settings),
                            "method_params": dict(a.method_params), "dataset": a.dataset}
                           for a in self.accounting.values()],
            "backbones": {b: {"weights": spec["weights"],
                              "card": f"backbones/{b}.json" if spec["weights"] == "pretrain" else None,
                              "checkpoints": {str(p): f"backbones/{b}@{p}.json" for p in self.checkpoint_pcts()}
                              if spec["weights"] == "pretrain" else {}}
                          for b, spec in self.backbones.items()},
            "strength": self._strength_points(),
            "method_sources": dict(self.method_sources),
            "privacy": [{"backbone": self.privacy_cell()[0], "split": s, "file": f"{self.privacy_stem(s)}.csv",
                         "examples": f"{self.privacy_stem(s)}.npz", "runs": [r for c in cases for r in case_runs(c)],
                         "accuracy_runs": self.privacy_accuracy_runs(s)}
                        for s, cases in self.privacy_cases.items()],
            "tuning": [{"backbone": t.backbone, "dataset": t.dataset, "method": t.method, "search": t.search,
                        "file": t.file,
                        "runs": [p.dir for p in t.points]} for t in self.tuning.values()],
            "tuning_share": self._shared() if self.tuning_section is not None else {},
            "tables": self.tables(),
            "figures": self.figures(),
            "report": self.doc["report"],
            "system": self.system,
        }

    def config_json(self) -> str:
        """The validated config as compact JSON (the ``grid`` rule's parameter)."""
        return json.dumps(self.doc, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """Hash of the expanded grid: a change in the expansion logic alone also rewrites ``grid.json``."""
        return hashlib.sha256(json.dumps(self.grid(), sort_keys=True, default=str).encode()).hexdigest()[:12]

    def run_config_yaml(self, run: Run) -> str:
        """The run's full RunConfig as YAML (reproduce one run by hand: ``train --config FILE``)."""
        return run.config().to_yaml()

    def summary(self) -> str:
        roles: dict[str, int] = {}
        for r in self.runs.values():
            for role in r.roles:
                roles[role.kind] = roles.get(role.kind, 0) + 1
        return (f"{len(self.runs)} runs ({', '.join(f'{v} {k}' for k, v in roles.items())} roles), "
                f"{len(self.partition_targets())} partitions, {len(self.pretrained())} pre-trained backbones, "
                f"{len(self.accounting)} accounting tables"
                + (f", {sum(len(t.points) for t in self.tuning.values())} tuning runs ({len(self.tuning)} "
                   f"learning-rate searches)" if self.tuning else "") + f"; results under {self.results}/")


def prepare_jobs(basedir: str | Path, python: str) -> None:
    """Make ``python -m benchmark`` in every job mean ``basedir``'s package under the ``python`` interpreter
    that runs Snakemake (jobs inherit the environment; a ``conda:`` env, when used, prepends its own)."""
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(basedir), os.environ.get("PYTHONPATH")]))
    os.environ["PATH"] = os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")])


def load_workflow(raw: Mapping[str, Any], schema_path: str | Path | None = None) -> Workflow:
    """Validate a workflow config (a Snakemake ``config`` dict or a loaded YAML) and expand its grid.

    Raises:
        ConfigError: one line naming the offending key (schema, RunConfig keys and ranges, grid rules).
    """
    return Workflow(validate_schema(raw, schema_path))


def load_workflow_file(path: str | Path, overrides: Mapping[str, Any] | None = None,
                       schema_path: str | Path | None = None) -> Workflow:
    """Load a workflow config YAML file, apply top-level overrides (e.g. ``{"results": "/tmp/r"}``), validate."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"workflow config file {str(p)!r} does not exist")
    raw = yaml.safe_load(p.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"workflow config file {str(p)!r} must hold a mapping")
    raw.update(overrides or {})
    return load_workflow(raw, schema_path)


def find_run(wf: Workflow, spec: str) -> Run:
    """A run by ``backbone/dataset/partition/variant/seedN`` or its run folder."""
    parts = [p for p in spec.strip("/").split("/") if p not in ("runs",)]
    parts = parts[-5:]
    if len(parts) != 5 or not parts[4].startswith("seed"):
        raise ConfigError(f"run {spec!r}: expected BACKBONE/DATASET/PARTITION/VARIANT/seedN")
    key = (*parts[:4], int(parts[4][4:]))
    if key not in wf.runs:
        raise ConfigError(f"run {spec!r} is not in the grid ({len(wf.runs)} runs; see `python -m benchmark grid`)")
    return wf.runs[key]


__all__ = ["Workflow", "load_workflow", "load_workflow_file", "find_run", "prepare_jobs"]
