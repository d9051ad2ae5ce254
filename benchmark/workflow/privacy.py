"""The ``privacy`` section: reconstruction attacks on the smashed data at each split point of one cell (the
privacy cell), and the noise defence's training runs (variant ``{method}-noise{σ}``, role ``noise``) that give its
accuracy cost (:mod:`benchmark.privacy`). A part of :class:`benchmark.workflow.grid.Workflow`."""

from __future__ import annotations

import json
import re
from functools import cached_property
from typing import Any, Iterator, Mapping

from benchmark.config import from_dict
from benchmark.errors import ConfigError
from benchmark.overrides import unflatten
from benchmark.workflow.names import NOISE, NOISE_KEY, Role, fmt_value, split_label
from benchmark.workflow.runs import Candidate, WorkflowState


def case_runs(case: Mapping[str, Any]) -> list[str]:
    """The run folders a privacy case attacks: its run (σ = 0) and its noise-trained runs (σ > 0)."""
    return ([case["run"]] if case.get("run") else []) + sorted(case.get("noise_runs", {}).values())


PRIVACY_RUN_PRIORITY = 15
"""The train rule's priority for a run a privacy job reads: above training (0) and the privacy job itself (10, which
then starts as soon as they are done), below the data, the backbone (30) and tuning (20), which every run waits for
(workflow/rules/*.smk)."""


class PrivacySection(WorkflowState):
    """The privacy cell, its attack cases per split, the noise runs, and the privacy rule's spec and inputs."""

    def _noise_candidates(self, cell: tuple) -> Iterator[Candidate]:
        """The noise defence's training runs: in the privacy cell's backbone, dataset and partition, on every seed
        (so the accuracy cost has a CI, paired with the method runs), each privacy method at each σ > 0 with its
        own settings (the run's default split; ``noise_training`` may list the methods): variant
        ``{method}-noise{σ}``, role ``noise`` (method, σ)."""
        trained = self.privacy["noise_training"]
        if not trained or cell[:3] != self.privacy_cell()[:3]:
            return
        methods = self.privacy["methods"] if trained is True else trained
        stray = [m for m in methods if m not in self.privacy["methods"]]
        if stray:
            raise ConfigError(f"workflow config key 'privacy.noise_training': {stray[0]!r} is not one of the privacy "
                              f"methods {self.privacy['methods']}")
        for sigma in sorted({float(s) for s in self.privacy["noise_sigma"] if s > 0}):
            for m in methods:
                if m in self.methods:  # else _privacy_cases names the bad key
                    yield m, {**self.method_sets(m), NOISE_KEY: sigma}, Role(NOISE, m, sigma)

    def privacy_cell(self) -> tuple[str, str, str, int]:
        """(backbone, dataset, partition, seed) the privacy jobs attack: ``privacy.*`` or the first of each."""
        p = self.privacy
        cell = (p.get("backbone") or next(iter(self.backbones)), p.get("dataset") or next(iter(self.datasets)),
                p.get("partition") or next(iter(self.partitions)), p.get("seed", self.seeds[0]))
        for key, value, known in zip(("backbone", "dataset", "partition", "seed"), cell,
                                     (self.backbones, self.datasets, self.partitions, self.seeds)):
            if value not in known:
                raise ConfigError(f"workflow config key 'privacy.{key}': {value!r} is not one of "
                                  f"{', '.join(map(str, known))}")
        return cell

    def _privacy_cases(self) -> dict[str, list[dict[str, Any]]]:
        """Per split label, one case per privacy method: its run in the privacy cell at that split (the method
        run, or an SFPrompt split sensitivity point) or, without one, the method run's settings at that split
        (attacked at round 0 only)."""
        backbone, dataset, partition, seed = cell = self.privacy_cell()
        stray = [m for m in self.privacy["defence"].get("methods") or [] if m not in self.privacy["methods"]]
        if stray:
            raise ConfigError(f"workflow config key 'privacy.defence.methods': {stray[0]!r} is not one of the privacy "
                              f"methods {self.privacy['methods']}")
        in_cell = [r for r in self.runs.values() if (r.backbone, r.dataset, r.partition, r.seed) == cell]
        out: dict[str, list[dict[str, Any]]] = {}
        for split in self.privacy["splits"]:
            label, cases = split_label(split), []
            for method in self.privacy["methods"]:
                if method not in self.methods:
                    raise ConfigError(f"workflow config key 'privacy.methods': {method!r} is not in methods "
                                      f"({', '.join(self.methods)})")
                base = next(r for r in in_cell if r.variant == method)
                match = [r for r in in_cell if r.method == method and any(
                    (role.kind, role.name) in (("method", method), ("sensitivity", "split")) for role in r.roles)
                    and r.split == tuple(split)]
                noise = {fmt_value(float(role.value)): r.dir for r in in_cell if r.method == method
                         and r.split == tuple(split) for role in r.roles if role.kind == NOISE}
                if match:
                    run = match[0]
                    cases.append({"method": method, "settings": dict(run.settings), "run": run.dir,
                                  **({"noise_runs": noise} if noise else {})})
                    continue
                where = f"privacy {method} {label}"
                sets = self.resolve_run(where, backbone, dict(base.settings),
                                        {"model.head_blocks": split[0], "model.tail_blocks": split[1]})
                cases.append({"method": method, "settings": sets, "run": None})
            out[label] = cases
        return out

    def privacy_accuracy_runs(self, split: str) -> list[dict[str, Any]]:
        """The runs behind the noise defence's accuracy cost at ``split`` (a label), on every seed of the privacy
        cell's backbone, dataset and partition: each privacy method's run (σ = 0) and its noise-trained runs
        (σ > 0), for the methods that have noise runs at this split. Empty without any."""
        backbone, dataset, partition, _ = self.privacy_cell()
        out = []
        for r in self.runs.values():
            if (r.backbone, r.dataset, r.partition) != (backbone, dataset, partition) or split_label(r.split) != split:
                continue
            for role in r.roles:
                if role.kind == NOISE or (role.kind == "method" and role.name in self.privacy["methods"]):
                    sigma = float(role.value) if role.kind == NOISE else 0.0
                    out.append({"method": r.method, "sigma": sigma, "seed": r.seed, "dir": r.dir})
        noisy = {e["method"] for e in out if e["sigma"] > 0}
        return sorted((e for e in out if e["method"] in noisy), key=lambda e: (e["method"], e["sigma"], e["seed"]))

    def privacy_stem(self, split: str) -> str:
        return f"privacy/{self.privacy_cell()[0]}_{split}"

    def privacy_targets(self) -> list[str]:
        return [self.path(f"{self.privacy_stem(s)}.{x}") for s in self.privacy_cases for x in ("csv", "npz")]

    def _privacy_split(self, wc: Any) -> list[dict[str, Any]]:
        if wc.backbone != self.privacy_cell()[0] or wc.split not in self.privacy_cases:
            raise ConfigError(f"no privacy job {wc.backbone}_{wc.split} in this workflow config")
        return self.privacy_cases[wc.split]

    def privacy_spec(self, wc: Any) -> str:
        """The privacy job's ``--spec`` (JSON): its cases and settings, so editing them reruns exactly it."""
        p = self.privacy
        acc = self.doc["accounting"].get("samples_per_client", "auto")
        cases = [{"method": c["method"], "settings": c["settings"],
                  "run_dir": self.path(c["run"]) if c["run"] else None,
                  **({"noise_runs": {s: self.path(d) for s, d in c["noise_runs"].items()}} if c.get("noise_runs") else {})}
                 for c in self._privacy_split(wc)]
        head, tail = (int(v) for v in re.fullmatch(r"h(\d+)t(\d+)", wc.split).groups())
        spec = {"backbone": wc.backbone, "split": [head, tail], "cases": cases,
                "run_labels": {self.path(r): r for c in self._privacy_split(wc) for r in case_runs(c)},
                "attacks": p["attacks"], "noise_sigma": p["noise_sigma"], "rounds": p["rounds"],
                "images": p["images"], "aux_samples": p["aux_samples"],
                "samples_per_client": (acc if isinstance(acc, int) else acc[self.privacy_cell()[1]]
                                       if isinstance(acc, dict) and self.privacy_cell()[1] in acc
                                       else self.run_samples_per_client()),
                "attack_settings": {"opt_steps": p["optimisation"]["steps"], "opt_lr": p["optimisation"]["lr"],
                                    "opt_tv": p["optimisation"]["tv"], "opt_prior": p["optimisation"]["prior"],
                                    "decoder_epochs": p["decoder"]["epochs"],
                                    "decoder_hidden": p["decoder"]["hidden"], "decoder_lr": p["decoder"]["lr"],
                                    "seed": self.privacy_cell()[3]},
                "defence": p["defence"]}
        return json.dumps(spec, sort_keys=True, separators=(",", ":"))

    def privacy_input(self, wc: Any) -> dict[str, Any]:
        cases = self._privacy_split(wc)
        backbone = self.privacy_cell()[0]
        out: dict[str, Any] = {"cache": self.cache_file(from_dict(unflatten(cases[0]["settings"])))}
        if self.backbones[backbone]["weights"] == "pretrain":
            out["weights"] = self.path(f"backbones/{backbone}.safetensors")
        runs = self._read_runs(cases)
        if runs:
            out["heads"] = [self.path(f"{r}/head_state.safetensors") for r in runs]
        return out

    def _read_runs(self, cases: list[dict[str, Any]]) -> list[str]:
        """The run folders whose final head state these cases read (none when ``privacy.rounds`` has no
        ``final``)."""
        return sorted({r for c in cases for r in case_runs(c)}) if "final" in self.privacy["rounds"] else []

    @cached_property
    def _privacy_read_runs(self) -> frozenset[str]:
        return frozenset(r for cases in self.privacy_cases.values() for r in self._read_runs(cases))

    def train_priority(self, wc: Any) -> int:
        """The train rule's priority: :data:`PRIVACY_RUN_PRIORITY` for a run a privacy job reads, else 0. A privacy
        job is long and takes a core of its own; with its runs trained first it overlaps the rest of the training
        instead of running alone after it (the smoke profile's last ~9 s). Scheduling only: no result depends on
        the order jobs run in."""
        return PRIVACY_RUN_PRIORITY if self.run(wc).dir in self._privacy_read_runs else 0


__all__ = ["PrivacySection"]
