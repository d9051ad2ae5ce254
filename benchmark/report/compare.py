"""Two results folders side by side: does a rerun (another machine, lab or commit) say the same thing?

``python -m benchmark compare RESULTS_A RESULTS_B`` reads what each folder's report wrote and answers, per item:

* **accuracy cells** (``tables/accuracy.csv``): both means ± 95% CI and whether each mean lies inside the
  *other* run's interval (``|mean_A - mean_B| <= ci_B``). A cell passes when both do; with fewer than two
  seeds there is no interval and a cell passes only when the means are equal. A cell whose seeds diverged
  (non-finite loss) passes only when as many diverged on both sides.
* **learning-rate choices** (``tables/tuning.csv``, the ``chosen`` rows): the same rate, or moved.
* **claim verdicts** (``tables/claims.csv``): the same verdict per (claim, backbone, setting), or flipped.
* **fingerprints**: each folder's numerics path (CPU model, kernel ISA, threads, BLAS/oneDNN build, the
  variables that override them), git revisions and data (origin, source kind, digest of the decoded arrays),
  from the runs' ``env.json`` files: context, never a failure.

An item present in one folder only is reported and fails: a rerun that lost a cell has not reproduced it.
Pure functions from folders to :class:`~benchmark.report.tables.Table` objects; the CLI writes them as CSV and
Markdown and exits non-zero when anything fails, so a script can gate on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.stats import CONFIDENCE, fmt_accuracy, fmt_ci
from benchmark.report.tables import CELL, Table

CHOICE_KEY = ["backbone", "dataset", "method"]
CLAIM_KEY = ["claim", "backbone", "setting"]


@dataclass
class Comparison:
    """The four comparison tables and how many items failed in each."""

    tables: list[Table]
    failures: dict[str, int]

    @property
    def ok(self) -> bool:
        return not any(self.failures.values())

    def summary(self) -> str:
        parts = [f"{name}: {n} differ" for name, n in self.failures.items()]
        return ("same: " if self.ok else "DIFFERENT: ") + "; ".join(parts)


def _read_table(root: Path, name: str, required: bool) -> pd.DataFrame | None:
    path = root / "tables" / f"{name}.csv"
    if not path.exists():
        if required:
            raise BenchmarkError(f"{path} not found: is {root} a results folder with a rendered report "
                                 f"(python -m benchmark report --results {root})?")
        return None
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def _inside(mean: float, other_mean: float, other_half: float) -> bool:
    """Whether ``mean`` lies in the other run's interval; without an interval, only an equal mean does."""
    if pd.isna(mean) or pd.isna(other_mean):
        return False
    if pd.isna(other_half):
        return mean == other_mean
    return abs(mean - other_mean) <= other_half


def compare_accuracy(a: pd.DataFrame, b: pd.DataFrame) -> tuple[Table, int]:
    """Accuracy cells of two runs: each mean inside the other's 95% CI?"""
    key = CELL + ["method"]
    both = a.merge(b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    rows = []
    for d in both.to_dict("records"):
        if d["_merge"] != "both":
            status = "only in A" if d["_merge"] == "left_only" else "only in B"
            a_in_b = b_in_a = False
        elif _diverged(d, "a") != _diverged(d, "b"):
            a_in_b = b_in_a = False
            status = "diverged differently"
        else:  # every seed diverged on both sides: no mean, the same result
            both_nan = pd.isna(d["accuracy_mean_a"]) and pd.isna(d["accuracy_mean_b"]) and _diverged(d, "a") > 0
            a_in_b = both_nan or _inside(d["accuracy_mean_a"], d["accuracy_mean_b"], d["accuracy_ci95_b"])
            b_in_a = both_nan or _inside(d["accuracy_mean_b"], d["accuracy_mean_a"], d["accuracy_ci95_a"])
            status = "agree" if a_in_b and b_in_a else "outside"
        rows.append({**{k: d[k] for k in key},
                     **{f"{col}_{side}": d.get(f"{src}_{side}") for side in "ab" for col, src in
                        (("mean", "accuracy_mean"), ("ci95", "accuracy_ci95"), ("seeds", "seeds"))},
                     "diverged_a": _diverged(d, "a"), "diverged_b": _diverged(d, "b"),
                     "a_in_b": a_in_b, "b_in_a": b_in_a, "status": status})
    data = pd.DataFrame(rows, columns=key + ["mean_a", "ci95_a", "seeds_a", "mean_b", "ci95_b", "seeds_b",
                                             "diverged_a", "diverged_b", "a_in_b", "b_in_a", "status"])
    display = pd.DataFrame({
        "Backbone": data.backbone, "Dataset": data.dataset, "Partition": data.partition, "Method": data.method,
        "A": [_fmt(*v) for v in zip(data.mean_a, data.ci95_a, data.seeds_a, data.diverged_a)],
        "B": [_fmt(*v) for v in zip(data.mean_b, data.ci95_b, data.seeds_b, data.diverged_b)],
        "A in B's CI": data.a_in_b.map({True: "yes", False: "no"}),
        "B in A's CI": data.b_in_a.map({True: "yes", False: "no"}),
        "Status": data.status,
    })
    caption = (f"Final-round test accuracy (%) of two results folders, A and B: mean ± half-width of each one's "
               f"{CONFIDENCE:.0%} Student-t interval over seeds (n). A cell agrees when each mean lies inside "
               f"the other's interval; without an interval (n < 2) only equal means agree.")
    return Table("compare_accuracy", data, display, caption), int((data.status != "agree").sum())


def _diverged(row: dict[str, Any], side: str) -> int:
    """Diverged seeds of a cell on one side (0 for reports from before the column existed)."""
    value = row.get(f"diverged_seeds_{side}")
    return 0 if value is None or pd.isna(value) else int(value)


def _fmt(mean: Any, half: Any, n: Any, diverged: int) -> str:
    if diverged:
        return fmt_accuracy(float(mean), float(half), int(n), diverged)
    if pd.isna(mean):
        return "–"
    return f"{fmt_ci(float(mean), float(half), int(n))} (n={int(n)})"


def _chosen(tuning: pd.DataFrame | None) -> pd.DataFrame:
    cols = CHOICE_KEY + ["lr", "multiplier"]
    if tuning is None or not len(tuning):
        return pd.DataFrame(columns=cols)
    if "search" in tuning:  # a pooled reference's own search shares its method with the federated one
        tuning = tuning.assign(method=tuning["search"])
    chosen = tuning[tuning.chosen.astype(str).str.lower() == "true"]
    return chosen[cols].drop_duplicates(CHOICE_KEY)


def compare_choices(a: pd.DataFrame | None, b: pd.DataFrame | None) -> tuple[Table, int]:
    """Learning-rate choices of two runs, per (backbone, dataset, method) search."""
    both = _chosen(a).merge(_chosen(b), on=CHOICE_KEY, how="outer", suffixes=("_a", "_b"))
    same = [la == lb for la, lb in zip(both.lr_a, both.lr_b)]  # NaN (a search missing on one side) != anything
    data = both.assign(status=["same" if s else "moved" for s in same])
    display = pd.DataFrame({
        "Backbone": data.backbone, "Dataset": data.dataset, "Method": data.method,
        "A": [_lr(lr, m) for lr, m in zip(data.lr_a, data.multiplier_a)],
        "B": [_lr(lr, m) for lr, m in zip(data.lr_b, data.multiplier_b)],
        "Status": data.status,
    })
    caption = "Learning rate chosen by each search in two results folders (grid multiplier in brackets)."
    return Table("compare_tuning", data, display, caption), int((data.status != "same").sum())


def _lr(lr: Any, mult: Any) -> str:
    return "–" if pd.isna(lr) else f"{float(lr):g} (×{float(mult):g})"


def compare_verdicts(a: pd.DataFrame | None, b: pd.DataFrame | None) -> tuple[Table, int]:
    """Claim verdicts of two runs, per (claim, backbone, setting)."""
    cols = CLAIM_KEY + ["ours", "verdict"]
    pick = [(f if f is not None else pd.DataFrame(columns=cols))[cols].drop_duplicates(CLAIM_KEY) for f in (a, b)]
    both = pick[0].merge(pick[1], on=CLAIM_KEY, how="outer", suffixes=("_a", "_b"))
    same = [va == vb for va, vb in zip(both.verdict_a, both.verdict_b)]
    data = both.assign(status=["same" if s else "flipped" for s in same])
    display = pd.DataFrame({
        "Claim": data.claim, "Backbone": data.backbone, "Setting": data.setting,
        "A": [f"{v} ({o})" if isinstance(v, str) else "–" for v, o in zip(data.verdict_a, data.ours_a)],
        "B": [f"{v} ({o})" if isinstance(v, str) else "–" for v, o in zip(data.verdict_b, data.ours_b)],
        "Status": data.status,
    })
    caption = "The claims table's verdicts in two results folders ('ours' in brackets)."
    return Table("compare_claims", data, display, caption), int((data.status != "same").sum())


def fingerprint(root: Path) -> dict[str, str]:
    """What the runs of one folder ran on: each ``env.json`` field's distinct values, joined."""
    values: dict[str, set[str]] = {}
    for path in sorted((root / "runs").rglob("env.json")):
        env = json.loads(path.read_text())
        flat = {"git_revision": env.get("git_revision"), "torch": env.get("packages", {}).get("torch"),
                "device": env.get("device"), "platform": env.get("platform")}
        for k, v in (env.get("numerics") or {}).items():
            flat[k] = json.dumps(v, sort_keys=True) if isinstance(v, dict) else v
        for k, v in (env.get("data") or {}).items():
            flat[f"data.{k}"] = json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
        for k, v in flat.items():
            if v is not None:
                values.setdefault(k, set()).add(str(v))
    return {k: " | ".join(sorted(v)) for k, v in values.items()}


def compare_fingerprints(a: dict[str, str], b: dict[str, str]) -> Table:
    keys = list(dict.fromkeys([*a, *b]))
    data = pd.DataFrame({"field": keys, "a": [a.get(k, "–") for k in keys], "b": [b.get(k, "–") for k in keys],
                         "same": [a.get(k) == b.get(k) for k in keys]})
    display = data.rename(columns={"field": "Field", "a": "A", "b": "B"}).assign(
        Same=data.same.map({True: "yes", False: "no"})).drop(columns="same")
    caption = ("What each folder's runs ran on (their env.json files; several values are joined with |): the "
               "numerics path, package and git revision, the data read (origin, digest). Context for a difference, "
               "never a failure by itself.")
    return Table("compare_fingerprints", data, display, caption)


def compare(a: str | Path, b: str | Path) -> Comparison:
    """Compare two results folders (each holding ``tables/`` and ``runs/``)."""
    a, b = Path(a), Path(b)
    acc, n_acc = compare_accuracy(_read_table(a, "accuracy", True), _read_table(b, "accuracy", True))
    lr, n_lr = compare_choices(_read_table(a, "tuning", False), _read_table(b, "tuning", False))
    cl, n_cl = compare_verdicts(_read_table(a, "claims", False), _read_table(b, "claims", False))
    fp = compare_fingerprints(fingerprint(a), fingerprint(b))
    return Comparison([acc, lr, cl, fp], {"accuracy cells": n_acc, "learning-rate choices": n_lr,
                                          "claim verdicts": n_cl})

