"""Learning rates chosen by one procedure for every method: a grid search on a validation split.

The procedure (workflow section ``tuning``, one choice per backbone, dataset and method or pooled reference):

1. **Validation split.** ``tuning.validation_fraction`` of the (subsampled) training set is held out,
   stratified by class and drawn with the tuning seed's own stream (``data.validation_fraction``,
   :func:`benchmark.data.sampling.validation_split`). The tuning runs partition the rest among the clients of
   ``tuning.partition`` and evaluate on the held-out part; they never read the test split.
2. **Grid.** ``tuning.grid`` lists *multipliers* of the method's base learning rate: ``run.train.lr``, or
   ``method_settings.<method>.train.lr`` where a profile still sets one. The profiles set no per-method
   learning rate, so every method searches the same absolute values, centred on the base.
3. **Runs.** One run per grid point and tuning seed (``tuning.seeds``, disjoint from the final seeds: a final
   run is never judged on the seed its learning rate was chosen on), with every other setting as in the
   method's main-grid runs (rounds, clients, batch size, method parameters). One workflow job searches one
   (backbone, dataset, method): it trains the grid points one after the other in its own process
   (:func:`search`), so the ~4 s of importing torch and timm is paid once per search, not once per point
   (a third of a default-profile tuning run). A point whose folder already holds a finished run of the same
   config hash is reused, and an interrupted point resumes from its checkpoint, so a killed search loses at
   most one round. A point trained here equals the same point trained by the ``train`` verb in a process of
   its own, byte for byte (``tests/test_tuning.py``).
4. **Score and choice.** A point's score is the global model's validation accuracy after the final round,
   averaged over the tuning seeds. The choice follows a stated near-tie rule: the *smallest* learning rate
   whose score lies within ``tuning.near_tie`` standard errors of the best, the SE being binomial over the
   validation images and seeds (:func:`validation_se`; ~3.5 points per seed at 200 images). The plain argmax
   (``near_tie: 0``) let float rounding on another CPU move a choice between near-equal points and the choice
   move a result by more than its interval; within one SE the data cannot tell the points apart, and the
   smaller rate is the conservative one. The record keeps the argmax (``best_lr``) and the runner-up (the
   best-scoring other point), the rate a verdict should be rechecked at. A point whose training loss became
   NaN or infinite in any seed is recorded as diverged and loses to any finite score; if every point
   diverged, the smallest learning rate is chosen and the record says so.
5. **Use.** Every run of that (backbone, dataset, method) takes the chosen value (``train --lr-from``): the
   method's main-grid runs in every partition and seed, and SFPrompt's ablation and sensitivity variants
   (SFPrompt's choice). Each pooled-data reference (``references.pooled.<name>``) searches its own rate in its
   own regime, one client holding all the training data minus the validation split (``partition`` ``pooled``),
   because one client takes about ``num_clients`` times the optimiser steps per round of a federated client:
   the federated choice is the wrong one for it (the default profile's Centralized FT, trained at FedAvg's
   choice, landed below federated FedAvg). ``tuning.share`` lets a method take another's choice instead of
   searching: the default profile has SFL-V1 take FedAvg's, because SFL-V1's updates are FedAvg's arithmetic
   split in two (``tests/test_methods.py`` asserts they are equal), so its search would repeat FedAvg's. The
   choice is stated in each run's ``config.resolved.yaml`` (``train.lr``, so the config hash covers it) and
   ``env.json`` (``lr_from``).
6. **Recheck** (``tuning.recheck``). The method under study and the reference method also train, in every cell
   and final seed, at their search's runner-up rate (``train --lr-pick runner_up``, :func:`pick_lr`; env.json
   ``lr_pick``), and the claims table's accuracy verdict stands only where it is the same with either method at
   its runner-up: a choice that rounding could still move cannot then move a verdict unnoticed.

Departures from the paper (arXiv 2407.17533, whose hyper-parameters were not available to us): its learning
rates and how they were chosen are unknown, so this is our procedure, not a reproduction of theirs. Only the
learning rate is tuned; momentum, batch size, epochs and SFPrompt's own parameters keep the profile's values.
Tuning runs on one partition and a few seeds, so a choice can be partition-specific, and the tuning
runs see ``1 - validation_fraction`` of the training data (the final runs see all of it): the
best learning rate on fewer samples per client is used on more.

Files: the tuning runs are ``{results}/tuning/{backbone}/{dataset}/{method}/x{multiplier}/seed{seed}/`` (a normal run
folder; its metrics rows are labelled ``validation``) and the choice is
``{results}/tuning/{backbone}/{dataset}/{method}.json`` (:func:`gather`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import yaml

from benchmark.config import load_config
from benchmark.errors import DIVERGED, BenchmarkError, ConfigError

if TYPE_CHECKING:  # pandas is imported where used: the workflow imports this module to parse its grid
    import pandas as pd

FORMAT = 2
CRITERION = ("final-round validation accuracy of the global model, averaged over the tuning seeds; the smallest "
             "learning rate within near_tie standard errors of the best")
SPLIT = "validation"


def grid_lr(base: float, multiplier: float) -> float:
    """``base * multiplier`` rounded to 12 significant digits (0.02 x 0.3 = 0.006, not 0.006000000000000001)."""
    return float(f"{base * multiplier:.12g}")


def _finite(score: float | None) -> bool:
    return score is not None and not (isinstance(score, float) and math.isnan(score))


def choose(lrs: Sequence[float], scores: Sequence[float | None], tolerance: float = 0.0) -> int:
    """Index of the chosen learning rate: the smallest one whose score lies within ``tolerance`` of the best.

    With ``tolerance`` 0 this is the plain argmax (ties -> the smaller lr). The near-tie rule (``tolerance`` =
    one standard error of the best score) makes the choice stable: scores that float rounding on another CPU
    moves by far less than a standard error cannot move it, unless one sits exactly on the threshold.

    Args:
        lrs: The grid's learning rates (any order).
        scores: Validation accuracy per learning rate; ``None`` (or NaN) for a diverged run. All diverged: the
            smallest lr.
        tolerance: How far below the best score a smaller learning rate may lie and still be chosen (>= 0).
    """
    if len(lrs) != len(scores) or not lrs:
        raise ValueError("choose needs one score per learning rate, and at least one")
    finite = [i for i in range(len(lrs)) if _finite(scores[i])]
    if not finite:
        return min(range(len(lrs)), key=lambda i: lrs[i])
    best = max(scores[i] for i in finite)
    return min((i for i in finite if scores[i] >= best - tolerance), key=lambda i: lrs[i])


def runner_up(lrs: Sequence[float], scores: Sequence[float | None], chosen: int) -> int | None:
    """Index of the best-scoring other finite point (ties -> the smaller lr), or None: the rate a verdict is
    rechecked at, since the choice could have gone there."""
    others = [i for i in range(len(lrs)) if i != chosen and _finite(scores[i])]
    return max(others, key=lambda i: (scores[i], -lrs[i])) if others else None


def validation_se(accuracy: float, images: int, seeds: int) -> float:
    """Binomial standard error of a mean validation accuracy (fraction) over ``seeds`` runs of ``images``
    images each: sqrt(p (1 - p) / images) / sqrt(seeds). Seed-to-seed variation of training is not in it."""
    if not images or not seeds or not _finite(accuracy):
        return math.nan
    return math.sqrt(accuracy * (1 - accuracy) / images) / math.sqrt(seeds)


def final_validation_accuracy(run_dir: str | Path) -> float | None:
    """The global model's validation accuracy after the run's last round (fraction), or None if it diverged.

    Raises:
        BenchmarkError: the run evaluated on the test split, or has no validation rows (not a tuning run).
    """
    import pandas as pd  # deferred: pandas, ~0.3 s: the workflow imports this module

    metrics = pd.read_csv(Path(run_dir) / "metrics.csv")
    glob = metrics[metrics.client == -1]
    if ((glob.metric == DIVERGED) & (glob.split == SPLIT)).any():
        return None
    acc = glob[(glob.split == SPLIT) & (glob.metric == "accuracy")]
    if not len(acc):
        splits = sorted(set(glob.split[glob.metric == "accuracy"]))
        raise BenchmarkError(f"run {str(run_dir)!r} has no {SPLIT} accuracy (evaluated on {splits}); tuning runs "
                             f"must set data.validation_fraction and never score on the test split")
    return float(acc.sort_values("round").value.iloc[-1])


def resolved_lr(run_dir: Path) -> float:
    """The learning rate a run folder trained at: ``train.lr`` of its ``config.resolved.yaml`` (written after
    ``--lr-from``/``--lr-pick`` applied the tuning record)."""
    cfg = yaml.safe_load((Path(run_dir) / "config.resolved.yaml").read_text())
    return float(cfg["train"]["lr"])


def _eval_images(run_dir: Path) -> int | None:
    env = run_dir / "env.json"
    return json.loads(env.read_text()).get("eval_images") if env.is_file() else None


def gather(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Score every grid point's runs and choose (the ``tune`` verb; ``spec`` from ``Workflow.tune_spec``).

    ``spec``: ``backbone, dataset, method, partition, seeds, validation_fraction, base_lr``, optionally
    ``near_tie`` (the tolerance in standard errors, default 0: the plain argmax), and ``points``, a list of
    ``{multiplier, lr, run_dir}`` with a ``seed`` each when the search has several. A grid point's score is
    its mean validation accuracy over the seeds (diverged if any seed diverged). Each run's resolved
    ``train.lr`` must equal its point's (a stale folder is an error, not a silent mix-up).
    """
    by_mult: dict[float, dict[str, Any]] = {}
    images: set[int] = set()
    for p in spec["points"]:
        run = Path(p["run_dir"])
        lr = resolved_lr(run)
        if not math.isclose(lr, p["lr"], rel_tol=1e-9):
            raise BenchmarkError(f"tuning run {str(run)!r} trained with train.lr={lr!r}, its grid point says "
                                 f"{p['lr']!r}; delete the folder to rerun it")
        point = by_mult.setdefault(p["multiplier"], {"multiplier": p["multiplier"], "lr": p["lr"], "runs": [],
                                                     "val_accuracies": []})
        point["val_accuracies"].append(final_validation_accuracy(run))
        point["runs"].append(p.get("run_label", str(run)))
        images.add(_eval_images(run) or 0)
    points = []
    for point in by_mult.values():
        accs = point["val_accuracies"]
        diverged = any(a is None for a in accs)
        points.append({**point, "val_accuracy": None if diverged else sum(accs) / len(accs), "diverged": diverged,
                       "run": point["runs"][0]})
    seeds = list(spec.get("seeds", [spec.get("seed")]))
    lrs, scores = [p["lr"] for p in points], [p["val_accuracy"] for p in points]
    best = choose(lrs, scores)
    n_images = min(images) if images else 0
    se = validation_se(scores[best], n_images, len(seeds)) if _finite(scores[best]) else math.nan
    near_tie = float(spec.get("near_tie", 0.0))
    chosen = choose(lrs, scores, near_tie * se if _finite(se) else 0.0)
    second = runner_up(lrs, scores, chosen)
    doc = {k: spec[k] for k in ("backbone", "dataset", "method", "partition", "validation_fraction", "base_lr")}
    return {"format": FORMAT, **doc, "search": spec.get("search", spec["method"]), "seeds": seeds,
            "criterion": CRITERION,
            "grid": [p["multiplier"] for p in points], "points": points,
            "validation_images": n_images, "standard_error": se, "near_tie": near_tie,
            "best_lr": points[best]["lr"],
            "chosen_lr": points[chosen]["lr"], "chosen_multiplier": points[chosen]["multiplier"],
            "chosen_val_accuracy": points[chosen]["val_accuracy"],
            "runner_up_lr": None if second is None else points[second]["lr"],
            "runner_up_multiplier": None if second is None else points[second]["multiplier"],
            "runner_up_val_accuracy": None if second is None else points[second]["val_accuracy"],
            "all_diverged": all(p["diverged"] for p in points)}


def read_choice(path: str | Path, method: str | None = None, dataset: str | None = None) -> dict[str, Any]:
    """A tuning record (``--lr-from``), checked against the run it is applied to.

    Raises:
        ConfigError: the file is missing or not a tuning record, or was written for another method or dataset.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
        doc["chosen_lr"], doc["method"], doc["dataset"]
    except FileNotFoundError:
        raise ConfigError(f"--lr-from {str(p)!r} does not exist (the workflow's tune rule writes it)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"--lr-from {str(p)!r} is not a tuning record ({type(exc).__name__}: {exc})") from None
    for key, want in (("method", method), ("dataset", dataset)):
        if want is not None and doc[key] != want:
            raise ConfigError(f"--lr-from {str(p)!r} was tuned for {key} {doc[key]!r}, this run has {want!r}")
    return doc


def pick_lr(doc: Mapping[str, Any], pick: str = "chosen") -> tuple[float, str]:
    """The learning rate a run takes from a tuning record, and what it was: ``chosen``, or ``runner_up`` (the
    recheck runs of ``tuning.recheck``). A record without a runner-up (every other grid point diverged, or a
    one-point grid) gives its chosen rate, said so: no other rate is there to recheck the verdict at.

    Raises:
        ConfigError: ``pick`` is neither.
    """
    if pick == "chosen":
        return float(doc["chosen_lr"]), "chosen"
    if pick != "runner_up":
        raise ConfigError(f"--lr-pick {pick!r}: expected 'chosen' or 'runner_up'")
    if doc.get("runner_up_lr") is None:
        return float(doc["chosen_lr"]), "chosen (the record has no runner-up: no other grid point was scored)"
    return float(doc["runner_up_lr"]), "runner_up"


def lr_env(path: str | Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's ``env.json`` records about where its learning rate came from."""
    return {"lr_from": str(path), "lr_tuning": {k: doc.get(k) for k in (  # older records lack the newer keys
        "chosen_lr", "chosen_multiplier", "chosen_val_accuracy", "runner_up_lr", "grid", "partition", "seeds",
        "validation_fraction", "standard_error", "near_tie", "criterion")}}


def train_point(cfg: Any, out_dir: str | Path, *, partition_path: str | Path | None = None, progress: bool = False,
                resume: bool = True, extra_env: Mapping[str, Any] | None = None) -> tuple[Any, str | None]:
    """Train one grid point (:func:`search`): ``(metrics, None)``, or, when the loss became non-finite,
    ``(None, message)``; the run's files then record it as diverged (``benchmark.run.train``'s
    ``record_divergence``), so :func:`gather` scores the point as diverged instead of the search failing."""
    from benchmark.run import train  # deferred: run imports torch; the workflow imports tuning

    metrics = train(cfg, Path(out_dir), partition_path=partition_path, progress=progress, resume=resume,
                    extra_env=dict(extra_env or {}), record_divergence=True)
    if (metrics.metric == DIVERGED).any():
        return None, json.loads((Path(out_dir) / "env.json").read_text())["diverged"]
    return metrics, None


def finished_hash(run_dir: str | Path) -> str | None:
    """The config hash of the finished run in ``run_dir`` (its ``metrics.csv``, written last), or None."""
    import pandas as pd  # deferred: pandas, ~0.3 s: the workflow imports this module

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    hashes = set(pd.read_csv(path, usecols=["config_hash"]).config_hash.astype(str))
    return hashes.pop() if len(hashes) == 1 else None


def _drop_foreign_checkpoint(run_dir: Path, config_hash: str) -> None:
    """Delete an interrupted point's checkpoint if it belongs to another config (the grid point changed since),
    so the search retrains the point instead of failing on it; one of this config is kept and resumed."""
    import torch  # deferred: torch, ~3 s

    from benchmark.run import CHECKPOINT  # deferred: run imports torch; the workflow imports tuning

    ckpt = run_dir / CHECKPOINT
    if ckpt.is_file() and torch.load(ckpt, map_location="cpu", weights_only=False).get("config_hash") != config_hash:
        ckpt.unlink()


def search(spec: Mapping[str, Any], *, threads: int | None = None, progress: bool = False,
           log: Any = print) -> dict[str, Any]:
    """One learning-rate search (the ``tune`` verb): train each grid point of ``spec`` that has ``settings``
    (flat ``key: value`` run settings, ``Workflow.tune_spec``) in this process, unless its folder already holds
    a finished run of the same config hash, then :func:`gather` the choice.

    Points run one after the other in one process, each seeded from its own config as a ``train`` process
    would be, so the import cost is paid once per search. A folder of another config (a stale point) is
    retrained from scratch; an interrupted point resumes from its checkpoint.
    """
    from benchmark.methods import resolve_config  # deferred: methods imports torch; the workflow imports tuning

    for p in spec["points"]:
        if "settings" not in p:
            continue
        cfg = load_config(None, {**p["settings"], **({"threads": threads} if threads is not None else {})})
        run = Path(p["run_dir"])
        want = resolve_config(cfg).hash()
        have = finished_hash(run)
        if have == want:
            log(f"x{p['multiplier']:g} (lr {p['lr']:g}): finished run of this config in {run}, reused")
            continue
        if have is not None:  # a finished run of another config: start afresh (its checkpoint is gone)
            (run / "metrics.csv").unlink()
        _drop_foreign_checkpoint(run, want)
        _, diverged = train_point(cfg, run, progress=progress)
        log(f"x{p['multiplier']:g} (lr {p['lr']:g}): " + (f"diverged ({diverged})" if diverged else "trained")
            + f" -> {run}")
    return gather(spec)


def tuning_table_rows(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long form of tuning records: one row per (backbone, dataset, method, grid point), ``chosen`` marked."""
    import pandas as pd  # deferred: pandas, ~0.3 s: the workflow imports this module

    rows = []
    for doc in records:
        for p in doc["points"]:
            rows.append({"backbone": doc["backbone"], "dataset": doc["dataset"], "method": doc["method"],
                         "search": doc.get("search", doc["method"]),
                         "partition": doc["partition"], "seeds": " ".join(map(str, doc["seeds"])),
                         "validation_fraction": doc["validation_fraction"], "multiplier": p["multiplier"],
                         "lr": p["lr"], "val_accuracy": 100 * p["val_accuracy"] if p["val_accuracy"] is not None
                         else math.nan, "diverged": p["diverged"], "chosen": p["lr"] == doc["chosen_lr"],
                         "runner_up": p["lr"] == doc["runner_up_lr"],
                         "standard_error": 100 * doc["standard_error"]})
    return pd.DataFrame(rows, columns=["backbone", "dataset", "method", "search", "partition", "seeds",
                                       "validation_fraction",
                                       "multiplier", "lr", "val_accuracy", "diverged", "chosen", "runner_up",
                                       "standard_error"])


__all__ = ["choose", "gather", "search", "train_point", "finished_hash", "grid_lr", "final_validation_accuracy",
           "read_choice", "pick_lr", "resolved_lr", "lr_env", "tuning_table_rows", "CRITERION"]
