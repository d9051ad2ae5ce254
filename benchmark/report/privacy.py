"""The privacy outputs: the ``privacy`` table, the reconstruction grid, the privacy-cost frontier, and the
claims table's privacy row. Registered with :func:`benchmark.report.outputs.output` (imported by ``build``).

Inputs: the privacy jobs' per-image CSVs and example arrays (:mod:`benchmark.privacy.evaluate`) listed in
``grid.json``. Units: PSNR in dB on [0, 1] pixels (capped at 100 dB), SSIM unitless; mean ± half-width of
the Student-t 95% confidence interval over the attacked images (:func:`benchmark.privacy.metrics.mean_ci`);
client FLOPs per round as % of FedAvg's at the same split, fvcore convention (1 FLOP = 1 multiply-add).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from benchmark.report.stats import mean_ci
from benchmark.report.outputs import Sources, output
from benchmark.report.claims import UNDER_STUDY
from benchmark.report.figures import _empty, method_style
from benchmark.report.load import Results
from benchmark.report.tables import FLOP_NOTE, Table, fmt_num, method_label, order_methods

BASELINE = "mean_image"
KEYS = ["backbone", "dataset", "head_blocks", "tail_blocks", "method", "round", "sigma"]
NOISE_COST = ("not measured: the runs train without the noise (it is added in the privacy evaluation only; "
              "training with it needs the send sites in sfprompt.py and splitfed.py)")


def privacy_files(res: Results) -> list[dict[str, str]]:
    """The privacy jobs' files that exist (per-image CSVs and example arrays), for the manifest."""
    return [{"path": e[k], "kind": f"privacy_{k}"} for e in res.grid.get("privacy", []) for k in ("file", "examples")
            if (res.root / e[k]).is_file()]


def _sources(res: Results) -> Sources:
    runs = {r for e in res.grid.get("privacy", []) for r in e.get("runs", [])}
    return Sources(res.runs[res.runs.dir.isin(runs)], privacy_files(res))


def load_privacy(res: Results) -> pd.DataFrame:
    """Every privacy job's per-image rows (empty when the profile has none or they are not written yet)."""
    frames = [pd.read_csv(res.root / e["file"]) for e in res.grid.get("privacy", []) if (res.root / e["file"]).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise(images: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (split, method, round, σ, attack): PSNR/SSIM mean and 95% CI, the paired PSNR gain over the
    mean-image baseline (mean, CI, whether its CI lies above 0), the noise's PSNR reduction, cost, accuracy."""
    scored = images[images.image >= 0] if len(images) else images
    rows = []
    for key, grp in scored.groupby(KEYS + ["attack"], sort=False, dropna=False):
        rec = dict(zip(KEYS + ["attack"], key))
        rec["psnr_mean"], rec["psnr_ci95"], rec["n_images"] = mean_ci(grp.psnr)
        rec["ssim_mean"], rec["ssim_ci95"], _ = mean_ci(grp.ssim)
        base = scored[(scored[KEYS] == pd.Series(key[:-1], index=KEYS)).all(axis=1) & (scored.attack == BASELINE)]
        if rec["attack"] != BASELINE and len(base):
            diff = grp.set_index("image").psnr - base.set_index("image").psnr
            rec["psnr_gain_vs_baseline"], rec["psnr_gain_ci95"], _ = mean_ci(diff.dropna())
            low = rec["psnr_gain_vs_baseline"] - (rec["psnr_gain_ci95"] if not math.isnan(rec["psnr_gain_ci95"]) else 0)
            rec["beats_baseline"] = bool(low > 0)
        rec["attack_seconds"] = float(grp.seconds.iloc[0])
        rec["smashed_rms"] = float(grp.smashed_rms.iloc[0])
        rec["client_flops_pct_of_fedavg"] = float(grp.client_flops_pct_of_fedavg.iloc[0])
        rec["run"] = grp.run.iloc[0] if "run" in grp and isinstance(grp.run.iloc[0], str) else None
        rows.append(rec)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    clean = out[out.sigma == 0].set_index(["backbone", "dataset", "head_blocks", "tail_blocks", "method", "round",
                                           "attack"]).psnr_mean
    idx = pd.MultiIndex.from_frame(out[["backbone", "dataset", "head_blocks", "tail_blocks", "method", "round",
                                        "attack"]])
    out["noise_psnr_reduction"] = clean.reindex(idx).to_numpy() - out.psnr_mean.to_numpy()
    out["noise_accuracy_cost_pp"] = np.where(out.sigma > 0, np.nan, 0.0)
    acc = {} if runs is None or not len(runs) else dict(zip(runs.dir, runs.final_accuracy))
    out["run_final_accuracy"] = [acc.get(r, np.nan) if r else np.nan for r in out.run]
    return out


def _cell(mean: float, ci: float, ssim: float) -> str:
    if math.isnan(mean):
        return "–"
    ci_text = "" if math.isnan(ci) else f" ± {ci:.1f}"
    return f"{mean:.1f}{ci_text} / {ssim:.2f}"


def privacy_table(images: pd.DataFrame, runs: pd.DataFrame | None = None) -> Table:
    """The ``privacy`` table: per split, method, round and σ, each attack's PSNR ± CI / SSIM."""
    caption = ("Reconstruction of clients' training images from the smashed data the server receives "
               "(honest-but-curious server that knows the head's weights and the prompts). Each attack: PSNR in "
               "dB (on [0, 1] pixels, capped at 100) ± the 95% confidence interval over the images / mean SSIM "
               "(scikit-image). 'vs mean image': the best attack's paired PSNR gain over the auxiliary data's "
               "mean image (yes: its 95% CI lies above 0). σ: Gaussian noise added to the smashed data (activation "
               f"units; 'rms': the smashed patch tokens' root mean square). Client FLOPs per round as % of FedAvg's. "
               f"{FLOP_NOTE}.")
    summary = summarise(images, runs)
    if summary.empty:
        return Table("privacy", summary, pd.DataFrame(), caption, ["no privacy results in this results folder"])
    attacks = [a for a in ("analytic", "optimisation", "decoder", BASELINE) if a in set(summary.attack)]
    attacks += sorted(set(summary.attack) - set(attacks))
    display_rows, notes, not_beaten = [], [], []
    groups = summary.groupby(KEYS, sort=False, dropna=False)
    for key, grp in sorted(groups, key=lambda kv: (kv[0][2], kv[0][3], order_methods(summary.method).index(kv[0][4]),
                                                    kv[0][5] != "first", kv[0][6])):
        rec = dict(zip(KEYS, key))
        by = grp.set_index("attack")
        row = {"Split": f"{rec['head_blocks']}/{rec['tail_blocks']}", "Method": method_label(rec["method"]),
               "Round": rec["round"], "σ (rms)": f"{rec['sigma']:g} ({by.smashed_rms.iloc[0]:.2f})"}
        for a in attacks:
            row[a.replace("_", " ")] = _cell(by.psnr_mean.get(a, math.nan), by.psnr_ci95.get(a, math.nan),
                                             by.ssim_mean.get(a, math.nan))
        real = by.drop(index=BASELINE, errors="ignore").dropna(subset=["psnr_mean"])
        if len(real):
            best = real.psnr_mean.idxmax()
            gain, ci = real.loc[best, "psnr_gain_vs_baseline"], real.loc[best, "psnr_gain_ci95"]
            half = "" if pd.isna(ci) else f" ± {ci:.1f}"
            row["vs mean image"] = (f"{best}: {gain:+.1f}{half} dB "
                                    f"({'yes' if real.loc[best, 'beats_baseline'] else 'no'})"
                                    if not pd.isna(gain) else "–")
        opt = by.loc["optimisation"] if "optimisation" in by.index else None
        if opt is not None and "beats_baseline" in by and not pd.isna(opt.get("beats_baseline", np.nan)) \
                and not opt["beats_baseline"]:
            not_beaten.append(f"{row['Split']} {row['Method']} {rec['round']} σ={rec['sigma']:g}")
        row["Client FLOPs % FedAvg"] = fmt_num(float(by.client_flops_pct_of_fedavg.iloc[0]))
        acc = by.run_final_accuracy.iloc[0]
        row["Acc. %"] = "–" if pd.isna(acc) else f"{acc:.1f}"
        row["Noise acc. cost"] = "not measured" if rec["sigma"] > 0 else "–"
        display_rows.append(row)
    if "optimisation" in attacks and BASELINE in attacks:
        notes.append("optimisation beats the mean image (paired 95% CI above 0) everywhere" if not not_beaten else
                     f"optimisation does NOT beat the mean image (paired 95% CI) at: {'; '.join(not_beaten)}")
    missing = images[images.image < 0] if len(images) else images
    for _, r in missing[missing.note.fillna("").str.startswith("no run")].iterrows():
        notes.append(f"{method_label(r.method)} at split {r.head_blocks}/{r.tail_blocks}, round {r['round']}: "
                     "no run at this split in the grid, so only round 0 is attacked")
    if (summary.sigma > 0).any():
        notes.append(f"Noise defence accuracy cost: {NOISE_COST}.")
    notes.append("analytic '–': not applicable (the client map is non-linear for head blocks >= 1). Rounds: first = "
                 "the state broadcast in round 0; final = the aggregated client state after the last round.")
    return Table("privacy", summary, pd.DataFrame(display_rows), caption, list(dict.fromkeys(notes)))


@output("table", "privacy", _sources)
def _privacy_table(res: Results, src: Sources) -> Table:
    return privacy_table(load_privacy(res), src.runs)


# ----------------------------------------------------------------------------------------------------------
# figures


def _preferred(frame: pd.DataFrame) -> tuple[str, str]:
    """(method, round) shown in the grid: SFPrompt's final round when present."""
    methods = order_methods(frame.method)
    method = UNDER_STUDY if UNDER_STUDY in methods else methods[0]
    rounds = set(frame[frame.method == method]["round"])
    return method, "final" if "final" in rounds else "first"


def reconstruction_grid(images: pd.DataFrame, examples: dict[str, dict[str, np.ndarray]]) -> Figure:
    """Originals (top row) and, per split and attack, the reconstructions of one method and round at σ = 0."""
    scored = images[images.image >= 0] if len(images) else images
    if scored.empty or not examples:
        return _empty("no privacy results")
    method, round_ = _preferred(scored)
    rows: list[tuple[str, np.ndarray]] = []
    summary = summarise(images)
    originals = next(iter(examples.values()))["originals"]
    rows.append(("original", originals))
    for split, arrays in examples.items():
        for attack in [a for a in ("analytic", "optimisation", "decoder", BASELINE)]:
            key = f"{method}__{round_}__{attack}__0"
            if key not in arrays:
                continue
            hb, tb = (int(v) for v in split[1:].split("t"))
            s = summary[(summary.head_blocks == hb) & (summary.tail_blocks == tb) & (summary.method == method)
                        & (summary["round"] == round_) & (summary.sigma == 0) & (summary.attack == attack)]
            psnr = f"{s.psnr_mean.iloc[0]:.1f} dB" if len(s) else ""
            rows.append((f"{hb}/{tb} {attack.replace('_', ' ')}\n{psnr}", arrays[key]))
    ncols = originals.shape[0]
    fig = Figure(figsize=(1.3 * ncols + 1.6, 1.3 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (label, arr) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r][c]
            ax.imshow(np.moveaxis(arr[c], 0, -1), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"{method_label(method)}, {round_} round, σ = 0: clients' images (top)\nand the server's "
                 f"reconstructions per split (head/tail blocks) and attack", fontsize=8)
    return fig


def frontier(images: pd.DataFrame) -> Figure:
    """Best-attack PSNR against client FLOPs (% of FedAvg), one point per (method, split) and σ (σ = 0
    filled, noise hollow, joined per point); dotted: the mean-image baseline."""
    summary = summarise(images)
    if summary.empty:
        return _empty("no privacy results")
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    real = summary[(summary.attack != BASELINE) & summary.psnr_mean.notna()]
    labelled: set[tuple] = set()  # SFL-V1 and SFL-V2 often coincide: one label per position
    for method in order_methods(real.method):
        style = method_style(method)
        sub = real[real.method == method]
        for (hb, tb), grp in sub.groupby(["head_blocks", "tail_blocks"]):
            rnd = "final" if (grp["round"] == "final").any() else "first"
            best = grp[grp["round"] == rnd].groupby("sigma").psnr_mean.max().sort_index()
            x = float(grp.client_flops_pct_of_fedavg.iloc[0])
            ax.plot([x] * len(best), best.values, color=style["color"], lw=0.8, alpha=0.6)
            for sigma, y in best.items():
                ax.scatter([x], [y], marker=style["marker"], s=40, color=style["color"] if sigma == 0 else "white",
                           edgecolors=style["color"], zorder=3,
                           label=method_label(method) if (hb, tb, sigma) == tuple(
                               sub[["head_blocks", "tail_blocks"]].iloc[0]) + (0.0,) else None)
                text = f"{hb}/{tb}" + ("" if sigma == 0 else f" σ={sigma:g}")
                if (round(x, 3), round(y, 1), text) not in labelled:
                    labelled.add((round(x, 3), round(y, 1), text))
                    ax.annotate(text, (x, y), fontsize=6, xytext=(4, 2), textcoords="offset points")
    base = summary[summary.attack == BASELINE].psnr_mean
    if len(base):
        ax.axhline(float(base.mean()), color="grey", ls=":", lw=1, label="mean image (baseline)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("client FLOPs per round, % of FedAvg (fvcore: 1 FLOP = 1 multiply-add)")
    ax.set_ylabel("best-attack PSNR, dB (higher = more leakage)")
    ax.set_title("Privacy-cost frontier (filled: no noise; hollow: noise σ)", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def load_examples(res: Results) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for e in res.grid.get("privacy", []):
        path = res.root / e["examples"]
        if path.is_file():
            with np.load(path) as data:
                out[e["split"]] = {k: data[k] for k in data.files}
    return out


@output("figure", "privacy_reconstructions", _sources)
def _reconstructions(res: Results, src: Sources):
    return reconstruction_grid(load_privacy(res), load_examples(res))


@output("figure", "privacy_frontier", _sources)
def _frontier(res: Results, src: Sources):
    return frontier(load_privacy(res))


# ----------------------------------------------------------------------------------------------------------
# the claims table's privacy row


def claim_rows(res: Results) -> list[dict[str, Any]]:
    """The paper's privacy claim ("raw data never leaves the device") beside what our best attack recovers from
    SFPrompt's smashed data at split 0/0, the split that reproduces the 0.46% client computing."""
    summary = summarise(load_privacy(res))
    row = {"claim": "privacy", "statement": "privacy-preserving: raw data never leaves the device",
           "paper": "qualitative", "source": "privacy attack", "ours_value": math.nan}
    sel = summary[(summary.head_blocks == 0) & (summary.tail_blocks == 0) & (summary.method == UNDER_STUDY)
                  & (summary.sigma == 0) & (summary.attack != BASELINE) & summary.psnr_mean.notna()] \
        if len(summary) else summary
    if sel.empty:
        return [{**row, "ours": "–", "backbone": "–", "setting": "split 0/0 not attacked",
                 "verdict": "not evaluated", "note": "add [0, 0] to privacy.splits"}]
    rnd = "final" if (sel["round"] == "final").any() else "first"
    best = sel[sel["round"] == rnd].sort_values("psnr_mean").iloc[-1]
    verdict = "images recovered" if best.get("beats_baseline", False) else "no better than the mean image"
    return [{**row, "ours": f"{best.psnr_mean:.1f} dB PSNR, SSIM {best.ssim_mean:.2f}", "ours_value": best.psnr_mean,
             "backbone": best.backbone, "setting": f"split 0/0 (0.46% setting), {best.dataset}, {rnd} round, "
             f"{int(best.n_images)} images", "verdict": verdict,
             "note": f"best attack: {best.attack}; mean-image baseline "
                     f"{best.psnr_mean - best.psnr_gain_vs_baseline:.1f} dB"}]


def with_privacy_claim(table: Table, res: Results) -> Table:
    """``table`` (the claims table) with the privacy row appended to its data and display."""
    rows = claim_rows(res)
    data = pd.concat([table.data, pd.DataFrame(rows)], ignore_index=True)
    names = {"statement": "Claim", "paper": "Paper", "ours": "Ours", "backbone": "Backbone", "source": "Source",
             "setting": "Setting", "verdict": "Verdict", "note": "Note"}
    extra = pd.DataFrame(rows).rename(columns=names)[[c for c in table.display.columns if c in names.values()]]
    display = pd.concat([table.display, extra], ignore_index=True)
    return Table(table.name, data, display, table.caption, table.notes)
