"""Learning rates chosen by one procedure for every method: a grid search on a validation split.

The procedure (workflow section ``tuning``, one choice per backbone, dataset and method):

1. **Validation split.** ``tuning.validation_fraction`` of the (subsampled) training set is held out,
   stratified by class and drawn with the tuning seed's own stream (``data.validation_fraction``,
   :func:`benchmark.data.datasets.validation_split`). The tuning runs partition the rest among the clients of
   ``tuning.partition`` and evaluate on the held-out part; they never read the test split.
2. **Grid.** ``tuning.grid`` lists *multipliers* of the method's base learning rate: ``run.train.lr``, or
   ``method_settings.<method>.train.lr`` where a profile still sets one. The profiles set no per-method
   learning rate, so every method searches the same absolute values, centred on the base.
3. **Runs.** One run per grid point, with every other setting as in the method's main-grid runs (rounds,
   clients, batch size, method parameters) and seed ``tuning.seed``. One workflow job searches one
   (backbone, dataset, method): it trains the grid points one after the other in its own process
   (:func:`search`), so the ~4 s of importing torch and timm is paid once per search, not once per point
   (a third of a default-profile tuning run). A point whose folder already holds a finished run of the same
   config hash is reused, and an interrupted point resumes from its checkpoint, so a killed search loses at
   most one round. A point trained here equals the same point trained by the ``train`` verb in a process of
   its own, byte for byte (``tests/test_tuning.py``).
4. **Score and choice.** The score is the global model's validation accuracy after the final round. The chosen
   learning rate is the one with the highest score; ties go to the smaller learning rate. A point whose
   training loss became NaN or infinite is recorded as diverged and scores below any finite accuracy; if every
   point diverged, the smallest learning rate is chosen and the record says so.
5. **Use.** Every run of that (backbone, dataset, method) takes the chosen value (``train --lr-from``): the
   method's main-grid runs in every partition and seed, SFPrompt's ablation and sensitivity variants
   (SFPrompt's choice), and the pooled-data references, which take the choice of their base method
   (``references.pooled.<name>.method``: centralized FT takes FedAvg's, centralized prompt tuning FedPrompt's,
   the linear probe is tuned as a method of its own). ``tuning.share`` lets a method take another's choice
   instead of searching: the default profile has SFL-V1 take FedAvg's, because SFL-V1's updates are FedAvg's
   arithmetic split in two (``tests/test_methods.py`` asserts they are equal), so its search would repeat
   FedAvg's. The choice is stated in each run's
   ``config.resolved.yaml`` (``train.lr``, so the config hash covers it) and ``env.json`` (``lr_from``).

Departures from the paper (arXiv 2407.17533, whose hyper-parameters were not available to us): its learning
rates and how they were chosen are unknown, so this is our procedure, not a reproduction of theirs. Only the
learning rate is tuned; momentum, batch size, epochs and SFPrompt's own parameters keep the profile's values.
Tuning runs on one partition and one seed, so a choice can be partition- or seed-specific, and the tuning
runs see ``1 - validation_fraction`` of the training data (the final runs see all of it): the
best learning rate on fewer samples per client is used on more.

Files: the tuning runs are ``{results}/tuning/{backbone}/{dataset}/{method}/x{multiplier}/`` (a normal run
folder; its metrics rows are labelled ``validation``) and the choice is
``{results}/tuning/{backbone}/{dataset}/{method}.json`` (:func:`gather`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import yaml

from benchmark.errors import BenchmarkError, ConfigError

if TYPE_CHECKING:  # pandas is imported where used: the workflow imports this module to parse its grid
    import pandas as pd

FORMAT = 1
CRITERION = "final-round validation accuracy of the global model; ties -> the smaller learning rate"
DIVERGED = "diverged"
"""The ``metric`` of the one metrics row a diverged tuning run writes (value 1)."""
SPLIT = "validation"


def grid_lr(base: float, multiplier: float) -> float:
    """``base * multiplier`` rounded to 12 significant digits (0.02 x 0.3 = 0.006, not 0.006000000000000001)."""
    return float(f"{base * multiplier:.12g}")


def choose(lrs: Sequence[float], scores: Sequence[float | None]) -> int:
    """Index of the chosen learning rate: the highest score; ties (and all-diverged, ``None``) -> the smallest lr.

    Args:
        lrs: The grid's learning rates (any order).
        scores: Validation accuracy per learning rate; ``None`` (or NaN) for a diverged run.
    """
    if len(lrs) != len(scores) or not lrs:
        raise ValueError("choose needs one score per learning rate, and at least one")
    def key(i: int) -> tuple[float, float]:
        s = scores[i]
        finite = s is not None and not (isinstance(s, float) and math.isnan(s))
        return (s if finite else -math.inf, -lrs[i])  # max score, then the smaller lr
    return max(range(len(lrs)), key=key)


def final_validation_accuracy(run_dir: str | Path) -> float | None:
    """The global model's validation accuracy after the run's last round (fraction), or None if it diverged.

    Raises:
        BenchmarkError: the run evaluated on the test split, or has no validation rows (not a tuning run).
    """
    import pandas as pd

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


def _resolved_lr(run_dir: Path) -> float:
    cfg = yaml.safe_load((run_dir / "config.resolved.yaml").read_text())
    return float(cfg["train"]["lr"])


def gather(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Score every grid point's run and choose (the ``tune`` verb; ``spec`` from ``Workflow.tune_spec``).

    ``spec``: ``backbone, dataset, method, partition, seed, validation_fraction, base_lr`` and ``points``, a
    list of ``{multiplier, lr, run_dir}``. Each run's resolved ``train.lr`` must equal its point's (a stale
    folder is an error, not a silent mix-up).
    """
    points = []
    for p in spec["points"]:
        run = Path(p["run_dir"])
        lr = _resolved_lr(run)
        if not math.isclose(lr, p["lr"], rel_tol=1e-9):
            raise BenchmarkError(f"tuning run {str(run)!r} trained with train.lr={lr!r}, its grid point says "
                                 f"{p['lr']!r}; delete the folder to rerun it")
        acc = final_validation_accuracy(run)
        points.append({"multiplier": p["multiplier"], "lr": p["lr"], "val_accuracy": acc,
                       "diverged": acc is None, "run": p.get("run_label", str(run))})
    best = choose([p["lr"] for p in points], [p["val_accuracy"] for p in points])
    doc = {k: spec[k] for k in ("backbone", "dataset", "method", "partition", "seed", "validation_fraction",
                                "base_lr")}
    return {"format": FORMAT, **doc, "criterion": CRITERION,
            "grid": [p["multiplier"] for p in points], "points": points,
            "chosen_lr": points[best]["lr"], "chosen_multiplier": points[best]["multiplier"],
            "chosen_val_accuracy": points[best]["val_accuracy"],
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


def lr_env(path: str | Path, doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a run's ``env.json`` records about where its learning rate came from."""
    return {"lr_from": str(path), "lr_tuning": {k: doc[k] for k in (
        "chosen_lr", "chosen_multiplier", "chosen_val_accuracy", "grid", "partition", "seed",
        "validation_fraction", "criterion")}}


def train_point(cfg: Any, out_dir: str | Path, *, partition_path: str | Path | None = None, progress: bool = False,
                resume: bool = True, extra_env: Mapping[str, Any] | None = None) -> tuple[Any, str | None]:
    """Train one grid point (``train --diverged-ok`` and :func:`search`): ``(metrics, None)``, or, when the
    loss became non-finite, ``(None, message)`` after :func:`write_diverged` recorded it."""
    from benchmark.errors import NumericError
    from benchmark.run import train

    try:
        return train(cfg, Path(out_dir), partition_path=partition_path, progress=progress, resume=resume,
                     extra_env=dict(extra_env or {})), None
    except NumericError as exc:
        write_diverged(cfg, out_dir, str(exc))
        return None, str(exc)


def finished_hash(run_dir: str | Path) -> str | None:
    """The config hash of the finished run in ``run_dir`` (its ``metrics.csv``, written last), or None."""
    import pandas as pd

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    hashes = set(pd.read_csv(path, usecols=["config_hash"]).config_hash.astype(str))
    return hashes.pop() if len(hashes) == 1 else None


def _drop_foreign_checkpoint(run_dir: Path, config_hash: str) -> None:
    """Delete an interrupted point's checkpoint if it belongs to another config (the grid point changed since),
    so the search retrains the point instead of failing on it; one of this config is kept and resumed."""
    import torch

    from benchmark.run import CHECKPOINT

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
    from benchmark.config import load_config
    from benchmark.methods import resolve_config

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


def write_diverged(cfg: Any, out_dir: str | Path, message: str) -> None:
    """The files of a tuning run whose loss became non-finite: ``config.resolved.yaml``, ``env.json`` and a
    one-row ``metrics.csv`` (split ``validation``, metric ``diverged``), so :func:`gather` scores the point
    as diverged instead of the workflow failing."""
    import pandas as pd

    from benchmark.io import environment, git_revision, write_csv, write_json, write_text
    from benchmark.methods import method_name, resolve_config

    cfg = resolve_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    git = git_revision(Path(__file__).resolve().parent)
    env = environment(cfg.device, cfg.seed, cfg.hash(), cfg.threads or 0)
    env.update({"method": cfg.train.method, "diverged": message, "eval_split": SPLIT})
    write_text(out / "config.resolved.yaml", cfg.to_yaml())
    write_json(out / "env.json", env)
    write_csv(out / "metrics.csv", pd.DataFrame([{
        "method": method_name(cfg.train.method), "dataset": cfg.data.dataset, "partition": cfg.partition.scheme,
        "seed": cfg.seed, "round": -1, "client": -1, "split": SPLIT, "metric": DIVERGED, "value": 1.0,
        "config_hash": cfg.hash(), "git_revision": git}]))
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        ckpt.unlink()


def tuning_table_rows(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Long form of tuning records: one row per (backbone, dataset, method, grid point), ``chosen`` marked."""
    import pandas as pd

    rows = []
    for doc in records:
        for p in doc["points"]:
            rows.append({"backbone": doc["backbone"], "dataset": doc["dataset"], "method": doc["method"],
                         "partition": doc["partition"], "seed": doc["seed"],
                         "validation_fraction": doc["validation_fraction"], "multiplier": p["multiplier"],
                         "lr": p["lr"], "val_accuracy": 100 * p["val_accuracy"] if p["val_accuracy"] is not None
                         else math.nan, "diverged": p["diverged"], "chosen": p["lr"] == doc["chosen_lr"]})
    return pd.DataFrame(rows, columns=["backbone", "dataset", "method", "partition", "seed", "validation_fraction",
                                       "multiplier", "lr", "val_accuracy", "diverged", "chosen"])


__all__ = ["choose", "gather", "search", "train_point", "finished_hash", "grid_lr", "final_validation_accuracy",
           "read_choice", "lr_env", "write_diverged", "tuning_table_rows", "CRITERION"]
