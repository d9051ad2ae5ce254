"""What the system model answers: accuracy against simulated wall-clock, time and energy to a target accuracy,
and per-round time of paper-scale backbones from the analytic accounting (no training).

Units: seconds, joules, Mbit/s; accuracy in percent. Time to target is the simulated time at the end of the
first *evaluated* round whose test accuracy reaches the target (rounds between evaluations are not seen, so
with ``eval_every > 1`` it is an upper bound); not reaching it is a valid answer (NaN, shown "not reached").
Rounds before the final one may be scored on a fixed test subsample (``train.interim_eval_samples``; the
default profile's 2,000 images carry a binomial SE of about 1.1 points), so whether an interim round reaches
the target is decided on that subsample; the target itself comes from final-round accuracies on the whole split.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from benchmark.analytic import comm_rows
from benchmark.methods import method_class
from benchmark.models.split import SplitViT
from benchmark.models.vit import create_backbone
from benchmark.study import BASELINE, UNDER_STUDY
from benchmark.system.model import USAGE_COLUMNS, client_usage, replicate, round_times, uplink_crossover
from benchmark.system.profiles import SystemProfile

USAGE_FILE_COLUMNS = ["method", "samples_per_client"] + USAGE_COLUMNS[2:]


def read_ledgers(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comm, flops) ledgers of a run folder."""
    folder = Path(folder)
    return pd.read_csv(folder / "comm.csv"), pd.read_csv(folder / "flops.csv")


def run_timeline(usage: pd.DataFrame, curve: pd.DataFrame, method: str, profile: SystemProfile,
                 num_clients: int) -> pd.DataFrame:
    """A run's evaluated rounds with simulated time: ``round, accuracy, time_s`` (cumulative, end of round),
    ``energy_per_client_j`` (cumulative client energy over all clients ÷ ``num_clients``).

    Args:
        usage: :func:`~benchmark.system.model.client_usage` of the run.
        curve: The run's ``round, accuracy`` (evaluated rounds only).
        method: The run's method (selects the critical path).
        profile: The system profile.
        num_clients: Clients of the federation (the energy is averaged over all of them).
    """
    rt = round_times(usage, method, profile)
    rt["energy_per_client_j"] = rt.energy_j.cumsum() / max(num_clients, 1)
    merged = curve[["round", "accuracy"]].merge(rt[["round", "time_s", "energy_per_client_j"]], on="round",
                                                how="left")
    return merged.sort_values("round").reset_index(drop=True)


def to_target(timeline: pd.DataFrame, target: float) -> dict[str, float]:
    """Time, energy per client and rounds until the first evaluated round with accuracy >= ``target``
    (NaN each when never reached)."""
    hit = timeline[timeline.accuracy >= target]
    if not len(hit):
        return {"time_s": math.nan, "energy_per_client_j": math.nan, "rounds": math.nan}
    first = hit.iloc[0]
    return {"time_s": float(first.time_s), "energy_per_client_j": float(first.energy_per_client_j),
            "rounds": float(first["round"]) + 1}


def analytic_usage(cfg, samples_per_client: int, accounting: pd.DataFrame, num_classes: int = 10,
                   methods: Iterable[str] | None = None,
                   method_params: dict[str, dict] | None = None) -> pd.DataFrame:
    """One client's round per method from the analytic accounting: FLOPs from an accounting table (the
    ``accounting`` verb's CSV), bytes and message legs from each method's ``expected_transfers`` (the hook a
    real run's ledger is tested against). The model is built on PyTorch's ``meta`` device: only shapes are
    needed, so ViT-L/16 costs no memory or time.

    Returns:
        :data:`USAGE_FILE_COLUMNS`, one row per method.
    """

    import torch  # deferred: torch, ~3 s


    m = cfg.model
    with torch.device("meta"):
        vit = create_backbone(dataclasses.replace(m, weights="scratch"), num_classes)
        models = {p: SplitViT(vit, m.head_blocks, m.tail_blocks, m.prompt_len if p else 0, m.prompt_depth)
                  for p in (False, True)}
    if "reading" in accounting:  # the default reading of each method (the others are the claims' range)
        accounting = accounting[accounting.reading == "default"]
    acc = accounting.set_index("method")
    rows = []
    for spec in methods or list(acc.index):
        # a name or a 'module:Class' reference; a method from outside the package listed by name only in the
        # accounting table: the table says how to import it
        cls = method_class(acc.loc[spec, "method_source"] if spec in acc.index and "method_source" in acc else spec)
        name = cls.name
        model = cls.set_trainability(models[cls.uses_prompts])
        mcfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method=name),
                                   method_params=dict((method_params or {}).get(name, {})))
        comm = comm_rows(cls.expected_transfers(model, mcfg, samples_per_client)).assign(round=0, client=0)
        usage = client_usage(comm, pd.DataFrame(columns=["round", "client", "party", "total"]))
        row = usage.iloc[0].to_dict() if len(usage) else {k: 0 for k in USAGE_COLUMNS}
        row["client_flops"] = float(acc.loc[name, "client_gflops_round"]) * 1e9
        row["server_flops"] = float(acc.loc[name, "server_gflops_round"]) * 1e9
        rows.append({"method": name, "samples_per_client": samples_per_client,
                     **{k: row[k] for k in USAGE_COLUMNS[2:]}})
    return pd.DataFrame(rows, columns=USAGE_FILE_COLUMNS)


def paper_scale_rounds(usage: pd.DataFrame, profile: SystemProfile, clients_per_round: int) -> pd.DataFrame:
    """Per method: one round's time and client energy with ``clients_per_round`` identical clients, each as
    in ``usage`` (:func:`analytic_usage`): ``round_s, client_compute_s, server_compute_s, transfer_s,
    energy_per_client_j``."""
    rows = []
    for r in usage.itertuples(index=False):
        rt = round_times(replicate(r._asdict(), clients_per_round), r.method, profile).iloc[0]
        rows.append({"method": r.method, "round_s": rt.round_s, "client_compute_s": rt.client_compute_s,
                     "server_compute_s": rt.server_compute_s, "transfer_s": rt.transfer_s,
                     "energy_per_client_j": rt.energy_j / clients_per_round})
    return pd.DataFrame(rows)


def uplink_crossovers(usage: pd.DataFrame, profiles, pairs: Iterable[str], server: str, method: str = UNDER_STUDY,
                      reference: str = BASELINE, rounds_ratio: float = 1.0) -> pd.DataFrame:
    """Per profile pair: the uplink bandwidth (Mbit/s) below which ``method`` beats ``reference`` per round
    (or, with ``rounds_ratio`` = method's rounds ÷ reference's rounds to target, in time to target), keeping
    the pair's client, downlink and RTT; plus both methods' round time at the pair's own uplink.

    Assumption: with the default ``rounds_ratio`` = 1 this compares one round of each method, so it is a
    time-to-target crossover only if ``method`` and ``reference`` need the same number of rounds to reach the
    target accuracy; nothing here measures that (at paper scale there are no training runs). Pass the
    measured ratio of rounds to target as ``rounds_ratio`` where it is known.

    Columns: ``pair, crossover_mbps`` (NaN: they never cross), ``faster_below`` (the method faster at low
    uplinks, or everywhere when they never cross), ``{method}_round_s``, ``{reference}_round_s``.
    """

    by = usage.set_index("method")
    ua, ub = replicate(by.loc[method], 1), replicate(by.loc[reference], 1)
    rows = []
    for spec in pairs:
        prof = profiles.pair(spec, server)
        u, below = uplink_crossover(ua, method, ub, reference, prof, rounds_a=rounds_ratio)
        rows.append({"pair": spec, "crossover_mbps": u, "faster_below": below,
                     f"{method}_round_s": float(round_times(ua, method, prof).round_s.iloc[0]),
                     f"{reference}_round_s": float(round_times(ub, reference, prof).round_s.iloc[0])})
    return pd.DataFrame(rows)
