"""Read a workflow's results folder into tidy DataFrames (the only I/O of the report; the rest is pure).

``results/grid.json`` (written by the workflow's ``grid`` rule) says which runs exist and which role each
plays (method, ablation, sensitivity point); every run folder holds ``metrics.csv``, ``flops.csv``,
``comm.csv`` and ``env.json`` (see :mod:`benchmark.run`). Units used from here on: accuracy in percent,
FLOPs in GFLOPs (1e9, fvcore convention: 1 FLOP = 1 multiply-add), traffic in MB (1e6 bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.config import from_dict
from benchmark.overrides import unflatten
from benchmark.errors import DIVERGED, BenchmarkError
from benchmark.methods import method_class
from benchmark.tuning import resolved_lr
from benchmark.workflow.names import ARCH_KEYS

RUN_KEYS = ["backbone", "dataset", "partition", "variant", "method", "seed"]


@dataclass
class Results:
    """Everything the tables and figures are drawn from.

    Attributes:
        root: The results folder.
        grid: ``grid.json`` (validated workflow config, runs with roles, accounting entries).
        runs: One row per finished run: ``RUN_KEYS``, ``dir``, ``config_hash``, ``partition_hash``,
            ``final_accuracy`` (%), ``rounds``, per participating client per round ``client_gflops_round``,
            ``server_gflops_round``, ``comm_mb_up_round``, ``comm_mb_down_round``, ``comm_mb_round``, totals
            ``comm_mb_total`` and ``client_gflops_total``, ``head_blocks``, ``tail_blocks``, ``warnings``.
        roles: Long form of the runs' roles: ``dir``, ``kind``, ``name``, ``value``.
        curves: Per run and evaluated round: ``RUN_KEYS``, ``dir``, ``round``, ``accuracy`` (%), ``loss``,
            ``comm_mb_cumulative``, ``client_gflops_cumulative``.
        accounting: The accounting CSVs with ``label``, ``split``, ``head_blocks``, ``tail_blocks``, ``file``.
        histograms: Partition class counts, long form: ``dataset``, ``partition``, ``seed``, ``client``,
            ``class`` (label id), ``class_name`` (the dataset's name for it), ``count``; ``partition_files``
            maps (dataset, partition, seed) to file and hash.
        missing: Run folders listed in the grid without a finished ``metrics.csv``.
    """

    root: Path
    grid: dict[str, Any]
    runs: pd.DataFrame
    roles: pd.DataFrame
    curves: pd.DataFrame
    accounting: pd.DataFrame
    histograms: pd.DataFrame
    partition_files: dict[tuple, dict[str, str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def with_role(self, kind: str, name: str | None = None) -> pd.DataFrame:
        """Runs that play a role of ``kind`` (and ``name``), with the role's ``name`` and ``value`` columns."""
        sel = self.roles[(self.roles.kind == kind) & ((self.roles.name == name) if name else True)]
        return self.runs.merge(sel.rename(columns={"name": "role", "value": "role_value"}), on="dir")


def read_grid(root: str | Path) -> dict[str, Any]:
    path = Path(root) / "grid.json"
    if not path.is_file():
        raise BenchmarkError(f"{str(path)!r} does not exist: run the workflow (snakemake ... all) to create it")
    return json.loads(path.read_text())


def _backbone_top1(root: Path, grid: dict[str, Any]) -> dict[str, float]:
    """Backbone label -> its pre-training card's top-1 on the source dataset's test split (%), where a card exists."""
    out = {}
    for label, spec in grid.get("backbones", {}).items():
        card = root / spec["card"] if spec.get("card") else None
        if card is not None and card.is_file():
            acc = json.loads(card.read_text()).get("test_accuracy")
            if acc is not None:
                out[label] = 100 * float(acc)
    return out


def _scope(settings: dict[str, Any]) -> dict[str, Any]:
    """What a run's accuracy speaks for: the timm architecture, whether the profile resized it (an architecture
    key set beyond the name), and the training samples per client (the mean over clients). ``settings`` holds
    only what differs from the defaults, so the defaults are filled in first."""
    cfg = from_dict(unflatten(dict(settings)))
    samples = cfg.data.max_train_samples
    return {
        "model_backbone": cfg.model.backbone,
        "resized": any(settings.get(f"model.{k}") is not None for k in ARCH_KEYS[1:]),
        "samples_per_client": samples / cfg.partition.num_clients if samples else np.nan,
    }


def _trained_lr(folder: Path) -> float:
    """The learning rate the run trained at (:func:`benchmark.tuning.resolved_lr`), else NaN (no config file)."""
    return resolved_lr(folder) if (folder / "config.resolved.yaml").is_file() else np.nan


def _run_summary(run: dict[str, Any], folder: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    metrics = pd.read_csv(folder / "metrics.csv", dtype={"config_hash": str, "git_revision": str})
    diverged = bool((metrics.metric == DIVERGED).any())
    test = metrics[(metrics.split == "test") & (metrics.client == -1) & (metrics.metric != DIVERGED)].pivot_table(
        index="round", columns="metric", values="value")
    if "accuracy" not in test:  # diverged before its first evaluation: no point on the curve
        test = test.assign(accuracy=np.nan)
    totals = metrics[metrics.client == -1].pivot_table(index="round", columns="metric", values="value")
    curve = pd.DataFrame({
        "round": test.index.astype(int),
        "accuracy": 100 * test["accuracy"].to_numpy(),
        "loss": test["loss"].to_numpy() if "loss" in test else np.nan,
        # images scored at that round (train.interim_eval_samples); NaN for runs from before the row existed
        "eval_samples": test["samples"].to_numpy() if "samples" in test else np.nan,
        "comm_mb_cumulative": totals["cumulative_bytes"].reindex(test.index).to_numpy() / 1e6,
        "client_gflops_cumulative": totals.get("client_flops_cumulative", pd.Series(0.0, totals.index))
        .reindex(test.index).fillna(0).to_numpy() / 1e9,
    })
    flops = pd.read_csv(folder / "flops.csv")
    comm = pd.read_csv(folder / "comm.csv")
    # Per participating client per round: the (round, client) pairs that exchanged anything.
    pairs = comm.groupby(["round", "client"]).size().index
    n_pairs = max(len(pairs), 1)
    per_party = flops.groupby("party")["total"].sum() / 1e9
    direction = comm.groupby("direction")["bytes"].sum() / 1e6
    env = json.loads((folder / "env.json").read_text()) if (folder / "env.json").is_file() else {}
    settings = run.get("settings", {})
    row = {
        **{k: run[k] for k in RUN_KEYS}, "dir": run["dir"],
        "config_hash": str(metrics.config_hash.iloc[0]), "git_revision": str(metrics.git_revision.iloc[0]),
        "partition_hash": env.get("partition_hash"),
        # a diverged run (see benchmark.run.train) has no final accuracy: NaN, and the tables say "diverged"
        "final_accuracy": float(curve.accuracy.iloc[-1]) if len(curve) and not diverged else np.nan,
        "diverged": diverged,
        "rounds": int(metrics["round"].max()) + 1,
        "client_gflops_round": float(per_party.get("client", 0.0)) / n_pairs,
        "server_gflops_round": float(per_party.get("server", 0.0)) / n_pairs,
        "comm_mb_up_round": float(direction.get("up", 0.0)) / n_pairs,
        "comm_mb_down_round": float(direction.get("down", 0.0)) / n_pairs,
        "comm_mb_total": float(direction.sum()),
        "client_gflops_total": float(per_party.get("client", 0.0)),
        "head_blocks": int(settings.get("model.head_blocks", 1)),
        "tail_blocks": int(settings.get("model.tail_blocks", 1)),
        "warnings": " | ".join(env.get("warnings", [])),
        "test_images": env.get("test_images", np.nan),
        # the rate a run took from its tuning record: chosen, or the runner-up (tuning.recheck)
        "lr_pick": run.get("lr_pick", "chosen"),
        "train_lr": _trained_lr(folder),
        # what it actually took: a recheck run whose record has no runner-up trains at the chosen rate
        "lr_taken": env.get("lr_pick", np.nan),
        "test_split_full": env.get("test_split_full", np.nan),
        **_scope(settings),
    }
    row["comm_mb_round"] = row["comm_mb_up_round"] + row["comm_mb_down_round"]
    for k in ("backbone", "dataset", "partition", "variant", "method", "seed", "dir"):
        curve[k] = row[k]
    return row, curve


def load_results(root: str | Path) -> Results:
    """Load ``root/grid.json`` and everything it points to that exists (missing runs are listed, not fatal)."""
    root = Path(root)
    grid = read_grid(root)
    if grid.get("method_sources"):
        # methods from outside the package: registered under their names for labels, order and critical paths
        # (deferred import: it loads torch, which a results folder of built-in methods never needs here)

        for reference in grid["method_sources"].values():
            method_class(reference)
    rows, curves, roles, missing = [], [], [], []
    for run in grid["runs"]:
        folder = root / run["dir"]
        if not (folder / "metrics.csv").is_file():
            missing.append(run["dir"])
            continue
        row, curve = _run_summary(run, folder)
        rows.append(row)
        curves.append(curve)
        roles += [{"dir": run["dir"], **role} for role in run["roles"]]
    runs = pd.DataFrame(rows, columns=None if rows else RUN_KEYS + ["dir", "final_accuracy"])
    top1 = _backbone_top1(root, grid)
    runs["backbone_top1"] = [top1.get(b, np.nan) for b in runs.backbone] if len(runs) else []
    acc_frames = []
    for entry in grid["accounting"]:
        path = root / entry["file"]
        if path.is_file():
            frame = pd.read_csv(path)
            for k in ("label", "split", "head_blocks", "tail_blocks", "trained", "file"):
                frame[k] = entry[k]
            frame["dataset"] = entry.get("dataset")
            acc_frames.append(frame)
    hist, pfiles = [], {}
    for run in grid["runs"]:
        key = (run["dataset"], run["partition"], run["seed"])
        path = root / run["partition_file"]
        if key in pfiles or not path.is_file():
            continue
        doc = json.loads(path.read_text())
        pfiles[key] = {"file": run["partition_file"], "hash": doc.get("hash", "")}
        counts = np.asarray(doc["histogram"])
        c, k = np.meshgrid(np.arange(counts.shape[0]), np.arange(counts.shape[1]), indexing="ij")
        # partition files written up to 9c0d32d carry no names: their classes are named by index
        names = np.asarray(doc["meta"].get("classes") or [str(i) for i in range(counts.shape[1])], dtype=object)
        hist.append(pd.DataFrame({"dataset": key[0], "partition": key[1], "seed": key[2], "client": c.ravel(),
                                  "class": k.ravel(), "class_name": names[k.ravel()], "count": counts.ravel()}))
    return Results(
        root=root, grid=grid, runs=runs,
        roles=pd.DataFrame(roles, columns=["dir", "kind", "name", "value"]),
        curves=pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(
            columns=RUN_KEYS + ["dir", "round", "accuracy", "eval_samples", "comm_mb_cumulative",
                                "client_gflops_cumulative"]),
        accounting=pd.concat(acc_frames, ignore_index=True) if acc_frames else pd.DataFrame(),
        histograms=pd.concat(hist, ignore_index=True) if hist else pd.DataFrame(
            columns=["dataset", "partition", "seed", "client", "class", "class_name", "count"]),
        partition_files=pfiles, missing=missing,
    )
