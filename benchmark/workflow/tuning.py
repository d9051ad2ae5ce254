"""The ``tuning`` section: one learning-rate search per (backbone, dataset, tuned method) on the training data
minus a validation split, at each grid multiplier of the method's base rate and each tuning seed, and one per
pooled reference in its own regime; every run then trains at its search's choice (:mod:`benchmark.tuning`). A
part of :class:`benchmark.workflow.grid.Workflow`."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Iterator

from benchmark.config import from_dict
from benchmark.errors import ConfigError
from benchmark.overrides import unflatten
from benchmark.tuning import grid_lr
from benchmark.workflow.names import POOLED, RUNNER_UP, UNDER_STUDY, Role, fmt_value, tuning_file
from benchmark.workflow.runs import Candidate, WorkflowState


@dataclass(frozen=True)
class TunePoint:
    """One grid point of a learning-rate search: a run on the training data minus the validation split."""

    multiplier: float
    lr: float
    seed: int
    settings: tuple[tuple[str, Any], ...]
    dir: str
    """Run folder, relative to the results root."""


@dataclass(frozen=True)
class Tuning:
    """The learning-rate search of one (backbone, dataset, method) (:mod:`benchmark.tuning`)."""

    backbone: str
    dataset: str
    method: str
    search: str
    """What the search is named by (its record's file name): the method, or a pooled reference's name."""
    partition: str
    seeds: tuple[int, ...]
    validation_fraction: float
    base_lr: float
    near_tie: float
    points: tuple[TunePoint, ...]

    @property
    def file(self) -> str:
        return tuning_file(self.backbone, self.dataset, self.search)


class TuningSection(WorkflowState):
    """The searches, their checks, and the tune rule's spec and inputs."""


    def _check_tuning(self) -> None:
        t = self.tuning_section
        if t is None:
            return
        t.setdefault("partition", next(iter(self.partitions)))
        if t["partition"] not in self.partitions:
            raise ConfigError(f"workflow config key 'tuning.partition': {t['partition']!r} is not one of "
                              f"{', '.join(self.partitions)}")
        t["seeds"] = [int(x) for x in t.get("seeds") or [t.get("seed", 0)]]
        t.pop("seed", None)
        clash = sorted(set(t["seeds"]) & set(self.seeds))
        if clash:
            raise ConfigError(f"workflow config key 'tuning.seeds': {clash} are final seeds too (seeds: {self.seeds}); "
                              f"a learning rate tuned on a seed is then judged on that seed: pick others")
        for name, sets in self.doc["ablations"].get("variants", {}).items():
            if "train.lr" in sets:
                raise ConfigError(f"workflow config key 'ablations.variants.{name}.train.lr': with a tuning section "
                                  f"every run takes its method's tuned learning rate; remove it")

    def tuned_methods(self) -> list[str]:
        """The methods tuned per (backbone, dataset) on the federated clients: every method less those that take
        another's choice (``tuning.share``). Each pooled reference searches its own rate (:meth:`_tuning`)."""
        return [m for m in self.methods if m not in self._shared()]

    def _shared(self) -> dict[str, str]:
        """``tuning.share``: method -> the method whose choice it takes, checked against the tuned methods."""
        share = (self.tuning_section or {}).get("share", {})
        every = set(self.methods)
        for method, source in share.items():
            if method not in every or source not in every or source in share:
                bad, what = (method, "a tuned method") if method not in every else (
                    source, "a tuned method that is not itself shared")
                raise ConfigError(f"workflow config key 'tuning.share.{method}': {bad!r} is not {what} "
                                  f"({', '.join(sorted(every))})")
        return dict(share)

    def recheck_methods(self) -> list[str]:
        """``tuning.recheck``: the methods whose verdict pair is retrained at the runner-up rate (the method under
        study and the report's reference method, where both are in the grid), else none."""
        if not (self.tuning_section or {}).get("recheck"):
            return []
        pair = dict.fromkeys((UNDER_STUDY, self.doc["report"]["reference_method"]))  # once, were they the same
        return [m for m in pair if m in self.methods]

    def _recheck_candidates(self, cell: tuple) -> Iterator[Candidate]:
        """The recheck runs of a cell: each :meth:`recheck_methods` method with its own settings, role
        ``runner_up`` (its rate comes from the tuning record at run time: ``train --lr-pick runner_up``)."""
        for method in self.recheck_methods():
            yield method, self.method_sets(method), Role(RUNNER_UP, method)

    def _lr_from(self, backbone: str, dataset: str, method: str) -> str | None:
        if self.tuning_section is None:
            return None
        return tuning_file(backbone, dataset, self._shared().get(method, method))

    def _tuning(self) -> list[Tuning]:
        """One learning-rate search per (backbone, dataset, tuned method): the method's main-grid settings in
        the tuning cell (``tuning.partition``, each of ``tuning.seeds``) on the training data minus the validation
        split, at each grid multiplier of the method's base ``train.lr``; and one per pooled reference. A point
        is evaluated after its last round only (``train.eval_every`` = ``train.rounds``): the choice reads that
        round alone, and evaluation neither changes the model nor draws from training's generators, so the
        score equals an every-round evaluation's (tested)."""
        t = self.tuning_section
        if t is None:
            return []
        out = []
        frac, partition, seeds = t["validation_fraction"], t["partition"], tuple(t["seeds"])
        searches = [(m, m, partition) for m in self.tuned_methods()]
        # a pooled reference trains one client on all the data: 10x the optimiser steps per round of a federated
        # client, so it searches its own rate in that regime instead of taking its base method's federated one
        searches += [(ref["method"], name, POOLED) for name, ref in self.references.items()]
        for backbone in self.backbones:
            for dataset in self.datasets:
                for method, search, cell_partition in searches:
                    where = f"tuning {backbone}/{dataset}/{search}"
                    points, base = [], None
                    for seed in seeds:
                        layers = (self._cell_settings(backbone, dataset, cell_partition, seed),
                                  {"train.method": self.source(method)}, self.method_sets(method),
                                  {"data.validation_fraction": frac})
                        train = from_dict(unflatten(self._resolve(where, *layers))).train
                        base = train.lr
                        for mult in t["grid"]:
                            lr = grid_lr(base, mult)
                            # scored after the last round only: the criterion reads no other round
                            settings = self.resolve_run(where, backbone, *layers,
                                                        {"train.lr": lr, "train.eval_every": train.rounds})
                            points.append(TunePoint(mult, lr, seed, tuple(sorted(settings.items())),
                                                    f"tuning/{backbone}/{dataset}/{search}/x{fmt_value(mult)}/seed{seed}"))
                    out.append(Tuning(backbone, dataset, method, search, cell_partition, seeds, frac, base,
                                      float(t["near_tie"]), tuple(points)))
        return out

    def tuning_entry(self, wc: Any) -> Tuning:
        key = (wc.backbone, wc.dataset, wc.method)
        if key not in self.tuning:
            raise ConfigError(f"no learning-rate tuning for {'/'.join(key)} in this workflow config")
        return self.tuning[key]

    def tune_input(self, wc: Any) -> dict[str, str]:
        """What a search's grid points read: the decoded dataset and the pre-trained weights (every point of a
        search shares them; only ``train.lr`` differs)."""
        settings = dict(self.tuning_entry(wc).points[0].settings)
        out = {"cache": self.cache_file(from_dict(unflatten(settings)))}
        if self.backbones[wc.backbone]["weights"] == "pretrain":
            out["weights"] = self.path(f"backbones/{wc.backbone}.safetensors")
        return out

    def tune_spec(self, wc: Any) -> str:
        """The ``tune`` verb's ``--spec`` (JSON): the search's cell and, per grid point, its run folder and
        settings (a Snakemake param: editing any point's settings reruns the search, which reuses the points
        whose config hash is unchanged)."""
        t = self.tuning_entry(wc)
        spec = {"backbone": t.backbone, "dataset": t.dataset, "method": t.method, "search": t.search,
                "partition": t.partition,
                "seeds": list(t.seeds), "validation_fraction": t.validation_fraction, "base_lr": t.base_lr,
                "near_tie": t.near_tie,
                "points": [{"multiplier": p.multiplier, "lr": p.lr, "seed": p.seed, "run_dir": self.path(p.dir),
                            "run_label": p.dir, "settings": dict(p.settings)} for p in t.points]}
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))

    def tuning_targets(self) -> list[str]:
        return [self.path(t.file) for t in self.tuning.values()]

    def lr_arg(self, wildcards: Any, input: Any) -> str:  # noqa: A002 (Snakemake's argument name)
        """``--lr-from <tuning record>`` for runs whose learning rate is tuned (an input file, so a new choice
        reruns the run), plus ``--lr-method <method>`` when the run takes another method's choice
        (``tuning.share``), so the train verb still checks the record against the method it expects; empty
        without a ``tuning`` section."""
        if "tuning" not in input.keys():
            return ""
        arg = f"--lr-from {shlex.quote(str(input.tuning))}"
        run = self.run(wildcards)
        if run.lr_pick != "chosen":
            arg += f" --lr-pick {run.lr_pick}"
        source = None if run.partition == POOLED else self._shared().get(run.method)  # a reference has its own
        return f"{arg} --lr-method {source}" if source else arg


__all__ = ["TuningSection", "Tuning", "TunePoint"]
