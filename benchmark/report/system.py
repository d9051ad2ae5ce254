"""The report's time-to-accuracy outputs (issue #14), registered with :func:`benchmark.report.build.output`.

* table ``time_to_target``: per (backbone, dataset, partition) cell and profile pair, each method's simulated
  wall-clock time and client energy until its test accuracy first reaches ``system.target_fraction`` × the best
  method's final accuracy in the cell (mean over seeds); "not reached" is a valid cell. Mean ± 95% Student-t
  CI over seeds where there are several.
* figure ``accuracy_vs_time``: accuracy against simulated wall-clock, one curve per method, a panel per cell
  and pair.
* table ``system_rounds``: paper-scale (no training) per-round time and client energy of every method, from the
  analytic accounting, for every client × link of ``system.clients`` × ``system.links``.
* table ``crossover``: the uplink bandwidth below which SFPrompt's round is shorter than FedAvg's, per backbone,
  client and link (downlink and RTT of the link kept). It compares one round of each, so it is the
  time-to-target crossover only under the assumption that SFPrompt and FedAvg need the same number of rounds
  to reach the target; that is assumed, not measured.

Every time comes from :mod:`benchmark.system.model` (see its docstring for each method's critical path) and the
profiles copied into ``grid.json`` from ``config/system/*.yaml``.
"""

from __future__ import annotations

import math

import pandas as pd

from benchmark.report import figures as figs
from benchmark.report.load import Results
from benchmark.report.outputs import Sources, output
from benchmark.report.tables import CELL, Table, cell_table, fmt_num, method_label, order_methods
from benchmark.stats import mean_ci
from benchmark.study import BASELINE, UNDER_STUDY
from benchmark.system.analysis import paper_scale_rounds, read_ledgers, run_timeline, to_target, uplink_crossovers
from benchmark.system.model import client_usage
from benchmark.system.profiles import profiles_from_docs

TIME_NOTE = ("Simulated wall-clock (benchmark/system): compute = FLOPs (fvcore, 1 FLOP = 1 multiply-add) ÷ "
             "the device's effective rate; transfer = bytes × 8 ÷ bandwidth + RTT/2 per message leg; round = "
             "slowest client (FedAvg, FedPrompt, SFL-V1, SFPrompt) or the shared server's serial work (SFL-V2). "
             "Profiles and their sources: config/system/*.yaml.")


def fmt_seconds(s: float) -> str:
    """``0.42 s``, ``12.3 s``, ``4.1 min``, ``2.5 h``; ``–`` for NaN."""
    if s is None or pd.isna(s):
        return "–"
    if s < 60:
        return f"{fmt_num(s)} s"
    if s < 3600:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def fmt_joules(j: float) -> str:
    if j is None or pd.isna(j):
        return "–"
    return f"{fmt_num(j / 1e3)} kJ" if j >= 1e4 else f"{fmt_num(j)} J"


def _pm(mean: float, half: float, n: int, fmt) -> str:
    if n == 0 or pd.isna(mean):
        return "–"
    return fmt(mean) if n < 2 or pd.isna(half) else f"{fmt(mean)} ± {fmt(half)}"


# ----------------------------------------------------------------------------------------------------------
# sources


def _method_runs(res: Results) -> pd.DataFrame:
    return res.with_role("method")


def _system_files(res: Results) -> list[dict[str, str]]:
    out = []
    for a in res.grid["accounting"]:
        f = a["file"].replace("accounting/", "system/", 1)
        if (res.root / f).is_file():
            out.append({"path": f, "kind": "system"})
    return out


def _runs_source(res: Results) -> Sources:
    return Sources(_method_runs(res))


def _paper_source(res: Results) -> Sources:
    return Sources(_method_runs(res).iloc[0:0], _system_files(res))


def _section(res: Results) -> dict:
    return res.grid["system"]


def _profiles(res: Results):
    return profiles_from_docs(_section(res)["profile_docs"])


# ----------------------------------------------------------------------------------------------------------
# runs re-timed


def timelines(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """Every run's evaluated rounds under every pair: run keys, ``pair``, ``round``, ``accuracy`` (%),
    ``time_s``, ``energy_per_client_j``."""
    sec, prof = _section(res), _profiles(res)
    clients = {r["dir"]: int(r["settings"].get("partition.num_clients", 10)) for r in res.grid["runs"]}
    frames = []
    for run in runs.drop_duplicates("dir").itertuples(index=False):
        usage = client_usage(*read_ledgers(res.root / run.dir))
        curve = res.curves[res.curves.dir == run.dir]
        for spec in sec["pairs"]:
            tl = run_timeline(usage, curve, run.method, prof.pair(spec, sec["server"]), clients.get(run.dir, 10))
            frames.append(tl.assign(**{k: getattr(run, k) for k in CELL + ["method", "seed", "dir"]}, pair=spec))
    cols = CELL + ["method", "seed", "dir", "pair", "round", "accuracy", "time_s", "energy_per_client_j"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def time_to_target_data(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, pair, method): target (%), seeds, seeds that reached it, mean ± CI half width of
    time (s), energy per client (J) and rounds to target over the seeds that reached it."""
    frac = float(_section(res)["target_fraction"])
    tl = timelines(res, runs)
    rows = []
    for cell, cruns in runs.groupby(CELL, sort=False):
        best = cruns.groupby("method").final_accuracy.mean().max()
        target = frac * best
        ctl = tl[(tl[CELL] == pd.Series(cell, index=CELL)).all(axis=1)]
        for (pair, method), grp in ctl.groupby(["pair", "method"], sort=False):
            hits = [to_target(g, target) for _, g in grp.groupby("seed")]
            row = {**dict(zip(CELL, cell)), "pair": pair, "method": method, "target_accuracy": target,
                   "seeds": len(hits), "reached": sum(not math.isnan(h["time_s"]) for h in hits)}
            for key in ("time_s", "energy_per_client_j", "rounds"):
                m, half, _ = mean_ci([h[key] for h in hits])
                row[f"{key}_mean"], row[f"{key}_ci95"] = m, half
            rows.append(row)
    return pd.DataFrame(rows)


@output("table", "time_to_target", _runs_source)
def time_to_target_table(res: Results, src: Sources) -> Table:
    data = time_to_target_data(res, src.runs)
    frac = float(_section(res)["target_fraction"])
    caption = (f"Time to target accuracy: simulated wall-clock time until the global model's test accuracy first "
               f"reaches {frac:g} × the best method's final accuracy in the cell (evaluated rounds only), then "
               f"client energy per client to that point (J; client power × busy time, averaged over all clients); "
               f"mean ± 95% Student-t CI over seeds where there are several; 'not reached' when no seed reaches "
               f"it. {TIME_NOTE}")
    display_rows = []
    if len(data):
        methods = order_methods(data.method)
        for key, grp in data.groupby(CELL + ["pair"], sort=False):
            row = {"Backbone": key[0], "Dataset": key[1], "Partition": key[2], "Client/link": key[3],
                   "Target (%)": f"{grp.target_accuracy.iloc[0]:.1f}"}
            for m in methods:
                hit = grp[grp.method == m]
                if not len(hit):
                    row[method_label(m)] = "–"
                    continue
                h = hit.iloc[0]
                if h.reached == 0:
                    row[method_label(m)] = "not reached"
                    continue
                n = int(h.reached)
                text = (f"{_pm(h.time_s_mean, h.time_s_ci95, n, fmt_seconds)}; "
                        f"{_pm(h.energy_per_client_j_mean, h.energy_per_client_j_ci95, n, fmt_joules)}")
                if h.reached < h.seeds:
                    text += f" ({n}/{int(h.seeds)} seeds)"
                row[method_label(m)] = text
            display_rows.append(row)
    return cell_table("time_to_target", data, pd.DataFrame(display_rows), caption)


@output("figure", "accuracy_vs_time", _runs_source)
def accuracy_vs_time(res: Results, src: Sources):
    """Accuracy against simulated wall-clock time in one grid cell, a panel per client/link pair.

    One cell, not every cell × pair (16 panels in the default profile): the first cell in table order, named in
    the title; the ``time_to_target`` table covers every cell. Each point is an evaluated round: accuracy is the
    mean over seeds at the mean time of that round (log scale: methods differ by orders of magnitude). No CI
    bands: overlapping along a log axis they hide the curves; ``accuracy_vs_round`` draws them.
    """
    tl = timelines(res, src.runs)
    if tl.empty:
        return figs._empty("no finished runs")
    cell = figs._cells(tl)[0]
    tl = tl[(tl[CELL] == pd.Series(cell, index=CELL)).all(axis=1)]
    pairs = list(dict.fromkeys(tl.pair))
    fig, axes = figs._grid(len(pairs), size=(4.6, 3.4), sharey=True)
    for ax, pair in zip(axes, pairs):
        sub = tl[tl.pair == pair]
        for method in order_methods(sub.method):
            mean = sub[sub.method == method].groupby("round")[["time_s", "accuracy"]].mean()
            figs.mean_band(ax, mean.time_s.clip(lower=1e-6), mean.accuracy, None, method, markersize=4)
        figs.log_x(ax, fmt_seconds)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_title(f"client/link: {pair}", fontsize=9)
        ax.set_xlabel("simulated wall-clock (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    figs.legend_below(fig, axes)
    fig.suptitle(f"Accuracy against simulated wall-clock time, {figs._title(cell, tl.backbone.nunique() > 1)} "
                 f"(mean over seeds; every cell: table time_to_target)"
                 + figs.interim_note(res.curves, sep="\n"), fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------------
# paper scale, from the accounting (no training)


def _runs_split(res: Results) -> str:
    model = res.grid["config"].get("run", {}).get("model", {})
    return f"h{model.get('head_blocks', 1)}t{model.get('tail_blocks', 1)}"


def _paper_usages(res: Results) -> list[tuple[str, str, pd.DataFrame]]:
    """(backbone label, split, usage frame) of the accounting entries at the runs' split."""
    split, out = _runs_split(res), []
    for a in res.grid["accounting"]:
        f = res.root / a["file"].replace("accounting/", "system/", 1)
        if a["split"] == split and f.is_file():
            out.append((a["label"], a["split"], pd.read_csv(f)))
    return out


def _profile_grid(res: Results) -> list[str]:
    sec = _section(res)
    return [f"{c}/{lk}" for c in sec["clients"] for lk in sec["links"]]


def system_rounds_data(res: Results) -> pd.DataFrame:
    sec, prof = _section(res), _profiles(res)
    k = int(sec["clients_per_round"])
    frames = []
    for label, split, usage in _paper_usages(res):
        for spec in _profile_grid(res):
            frames.append(paper_scale_rounds(usage, prof.pair(spec, sec["server"]), k).assign(
                backbone=label, split=split, pair=spec, samples_per_client=int(usage.samples_per_client.iloc[0])))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@output("table", "system_rounds", _paper_source)
def system_rounds_table(res: Results, src: Sources) -> Table:
    data = system_rounds_data(res)
    sec = _section(res)
    rows = []
    if len(data):
        methods = order_methods(data.method)
        for (label, pair), grp in data.groupby(["backbone", "pair"], sort=False):
            row = {"Backbone": label, "Client/link": pair}
            for m in methods:
                h = grp[grp.method == m].iloc[0]
                row[method_label(m)] = f"{fmt_seconds(h.round_s)}; {fmt_joules(h.energy_per_client_j)}"
            rows.append(row)
    spc = int(data.samples_per_client.iloc[0]) if len(data) else 0
    caption = (f"Paper-scale cost of one round without training (analytic accounting at the runs' split "
               f"{_runs_split(res)}, {spc} samples per client, {sec['clients_per_round']} clients per round, "
               f"server {sec['server']}): simulated round time; client energy per participating client (J). "
               f"{TIME_NOTE}")
    return Table("system_rounds", data, pd.DataFrame(rows), caption)


def crossover_data(res: Results) -> pd.DataFrame:
    sec, prof = _section(res), _profiles(res)
    frames = []
    for label, split, usage in _paper_usages(res):
        if not {UNDER_STUDY, BASELINE} <= set(usage.method):
            continue
        frames.append(uplink_crossovers(usage, prof, _profile_grid(res), sec["server"]).assign(
            backbone=label, split=split))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@output("table", "crossover", _paper_source)
def crossover_table(res: Results, src: Sources) -> Table:
    data = crossover_data(res)
    rows = []
    for r in data.itertuples(index=False):
        if math.isnan(r.crossover_mbps):
            cross = f"none: {method_label(r.faster_below)} faster at any uplink"
        else:
            cross = f"{fmt_num(r.crossover_mbps)} Mbit/s"
        rows.append({"Backbone": r.backbone, "Client/link": r.pair,
                     "SFPrompt round": fmt_seconds(r.sfprompt_round_s), "FedAvg round": fmt_seconds(r.fedavg_round_s),
                     "Crossover uplink": cross,
                     "Faster below": method_label(r.faster_below) if not math.isnan(r.crossover_mbps) else "–"})
    caption = ("Crossover uplink bandwidth: below it SFPrompt's round is shorter than FedAvg's (the client, "
               "downlink and RTT of each pair kept, the uplink varied; equal rounds to target assumed, so it is "
               "also the time-to-target crossover when both need the same rounds). Both rounds at the pair's own "
               f"uplink beside it. From the analytic accounting at the runs' split {_runs_split(res)}. "
               f"{TIME_NOTE}")
    return Table("crossover", data, pd.DataFrame(rows), caption)


__all__ = ["timelines", "time_to_target_data", "system_rounds_data", "crossover_data", "fmt_seconds",
           "fmt_joules"]
