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

from benchmark.stats import fmt_ci, mean_ci, paired_difference
from benchmark.report.outputs import Sources, output
from benchmark.report.claims import UNDER_STUDY
from benchmark.report.figures import _empty, method_style
from benchmark.report.load import Results
from benchmark.report.tables import FLOP_NOTE, Table, fmt_num, method_label, order_methods

BASELINE = "mean_image"
ORDER = ("analytic", "lmmse", "optimisation", "decoder", BASELINE)
"""Attack columns in this order (others after them, sorted): the linear-map attacks, then the iterative ones."""
KEYS = ["backbone", "dataset", "head_blocks", "tail_blocks", "method", "round", "sigma", "server"]
STRONGEST = "all"
"""The ``server`` whose rows the frontier and the claims row read: the one that knows every aggregated part
(:data:`benchmark.privacy.evaluate.SERVERS`); ``main`` is SplitFed's main server alone."""
NOT_MEASURED = ("not measured where no run trained with the noise (privacy.noise_training off, or another split "
                "than the runs'): there the noise is added in the privacy evaluation only")


def privacy_files(res: Results) -> list[dict[str, str]]:
    """The privacy jobs' files that exist (per-image CSVs and example arrays), for the manifest."""
    return [{"path": e[k], "kind": f"privacy_{k}"} for e in res.grid.get("privacy", []) for k in ("file", "examples")
            if (res.root / e[k]).is_file()]


def _sources(res: Results) -> Sources:
    runs = {r for e in res.grid.get("privacy", []) for r in e.get("runs", [])}
    runs |= set(accuracy_runs(res).dir)  # every seed of the noise-trained runs and their σ = 0 pairs
    return Sources(res.runs[res.runs.dir.isin(runs)], privacy_files(res))


def accuracy_runs(res: Results) -> pd.DataFrame:
    """The runs behind the noise defence's accuracy cost (``grid.json``'s ``accuracy_runs``, every seed): one row
    per (split, method, σ, seed) with the run folder; σ = 0 is the method's own run."""
    rows = [{"head_blocks": int(e["split"][1:].split("t")[0]), "tail_blocks": int(e["split"].split("t")[1]), **a}
            for e in res.grid.get("privacy", []) for a in e.get("accuracy_runs", [])]
    return pd.DataFrame(rows, columns=["head_blocks", "tail_blocks", "method", "sigma", "seed", "dir"])


def noise_accuracy(acc_runs: pd.DataFrame, runs: pd.DataFrame | None) -> pd.DataFrame:
    """Per (split, method, σ): the final test accuracy over seeds (mean, 95% CI half-width, n; %) and its paired
    difference to σ = 0 by seed (pp; negative: the noise costs accuracy), via :mod:`benchmark.stats`."""
    cols = ["head_blocks", "tail_blocks", "method", "sigma", "acc_mean", "acc_ci95", "acc_n",
            "noise_accuracy_cost_pp", "noise_accuracy_cost_ci95", "noise_accuracy_cost_n"]
    if runs is None or not len(runs) or acc_runs is None or not len(acc_runs):
        return pd.DataFrame(columns=cols)
    frame = acc_runs.merge(runs[["dir", "final_accuracy"]], on="dir", how="left")
    rows = []
    for (hb, tb, method), grp in frame.groupby(["head_blocks", "tail_blocks", "method"], sort=False):
        clean = grp[grp.sigma == 0].set_index("seed").final_accuracy
        for sigma, sub in grp.groupby("sigma"):
            acc = sub.set_index("seed").final_accuracy
            cost = paired_difference(acc, clean) if sigma > 0 else (0.0, 0.0, len(acc.dropna()))
            rows.append((hb, tb, method, float(sigma), *mean_ci(acc), *cost))
    return pd.DataFrame(rows, columns=cols)


def load_privacy(res: Results) -> pd.DataFrame:
    """Every privacy job's per-image rows (empty when the profile has none or they are not written yet)."""
    frames = [pd.read_csv(res.root / e["file"]) for e in res.grid.get("privacy", []) if (res.root / e["file"]).is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarise(images: pd.DataFrame, runs: pd.DataFrame | None = None,
              acc_runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (split, method, round, σ, attack): PSNR/SSIM mean and 95% CI, the paired PSNR gain over the
    mean-image baseline (mean, CI, whether its CI lies above 0), the noise's PSNR reduction, cost, the attacked
    run's accuracy and, where runs trained with the noise (``acc_runs``, :func:`accuracy_runs`), the accuracy
    over seeds at this σ and its paired difference to σ = 0 (:func:`noise_accuracy`; NaN elsewhere)."""
    if len(images) and "server" not in images:  # written before the per-server threat model
        images = images.assign(server=STRONGEST)
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
    same = [k for k in KEYS if k != "sigma"] + ["attack"]
    clean = out[out.sigma == 0].set_index(same).psnr_mean
    idx = pd.MultiIndex.from_frame(out[same])
    out["noise_psnr_reduction"] = clean.reindex(idx).to_numpy() - out.psnr_mean.to_numpy()
    acc = {} if runs is None or not len(runs) else dict(zip(runs.dir, runs.final_accuracy))
    out["run_final_accuracy"] = [acc.get(r, np.nan) if r else np.nan for r in out.run]
    noise = noise_accuracy(acc_runs, runs)
    key = ["head_blocks", "tail_blocks", "method", "sigma"]
    out = out.merge(noise.astype({"head_blocks": "int64", "tail_blocks": "int64", "sigma": float}), on=key, how="left")
    out.loc[out.sigma == 0, "noise_accuracy_cost_pp"] = 0.0
    return out


def _cell(mean: float, ci: float, ssim: float) -> str:
    if math.isnan(mean):
        return "–"
    ci_text = "" if math.isnan(ci) else f" ± {ci:.1f}"
    return f"{mean:.1f}{ci_text} / {ssim:.2f}"


def privacy_table(images: pd.DataFrame, runs: pd.DataFrame | None = None,
                  acc_runs: pd.DataFrame | None = None) -> Table:
    """The ``privacy`` table: per split, method, round and σ, each attack's PSNR ± CI / SSIM, the PSNR the noise
    removes, and (where runs trained with it) the accuracy over seeds and the noise's paired accuracy cost."""
    caption = ("Reconstruction of clients' training images from the smashed data the server receives "
               "(honest-but-curious server). Server: 'all' knows the head's weights and the prompts as the client used "
               "them (SplitFed: main and fed server collude); 'main' is SplitFed's main server alone, which knows "
               "the head only as broadcast in round 0 (final round only). Each attack: PSNR in "
               "dB (on [0, 1] pixels, capped at 100) ± the 95% confidence interval over the images / mean SSIM "
               "(scikit-image). 'vs mean image': the best attack's paired PSNR gain over the auxiliary data's "
               "mean image (yes: its 95% CI lies above 0). σ: Gaussian noise added to the smashed data (activation "
               f"units; 'rms': the smashed patch tokens' root mean square). 'Noise PSNR cut': best-attack PSNR at "
               "σ = 0 minus at σ (dB, same round). Acc.: final test accuracy (%), mean ± 95% CI over seeds where runs "
               "trained with the noise, else the attacked run's; 'Noise acc. cost': accuracy at σ minus at σ = 0 "
               "(pp, paired by seed, ± 95% CI). Client FLOPs per round as % of FedAvg's. "
               f"{FLOP_NOTE}.")
    summary = summarise(images, runs, acc_runs)
    if summary.empty:
        return Table("privacy", summary, pd.DataFrame(), caption, ["no privacy results in this results folder"])
    attacks = [a for a in ORDER if a in set(summary.attack)]
    attacks += sorted(set(summary.attack) - set(attacks))
    display_rows, notes, not_beaten = [], [], []
    real_all = summary[(summary.attack != BASELINE) & summary.psnr_mean.notna()]
    best_clean = real_all[real_all.sigma == 0].groupby([k for k in KEYS if k != "sigma"]).psnr_mean.max()
    groups = summary.groupby(KEYS, sort=False, dropna=False)
    for key, grp in sorted(groups, key=lambda kv: (kv[0][2], kv[0][3], order_methods(summary.method).index(kv[0][4]),
                                                    kv[0][5] != "first", kv[0][7] != STRONGEST, kv[0][6])):
        rec = dict(zip(KEYS, key))
        by = grp.set_index("attack")
        row = {"Split": f"{rec['head_blocks']}/{rec['tail_blocks']}", "Method": method_label(rec["method"]),
               "Round": rec["round"], "Server": rec["server"],
               "σ (rms)": f"{rec['sigma']:.3g} ({by.smashed_rms.iloc[0]:.2f})"}
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
        clean = best_clean.get(tuple(rec[k] for k in KEYS if k != "sigma"), math.nan)
        row["Noise PSNR cut"] = (f"{clean - real.psnr_mean.max():+.1f} dB" if rec["sigma"] > 0 and len(real)
                                 and not pd.isna(clean) else "–")
        row["Client FLOPs % FedAvg"] = fmt_num(float(by.client_flops_pct_of_fedavg.iloc[0]))
        first = by.iloc[0]
        acc = by.run_final_accuracy.iloc[0]
        row["Acc. %"] = (fmt_ci(first.acc_mean, first.acc_ci95, int(first.acc_n)) if first.get("acc_n", 0) > 0
                         else "–" if pd.isna(acc) else f"{acc:.1f}")
        cost_n = first.get("noise_accuracy_cost_n", 0)
        row["Noise acc. cost"] = ("–" if rec["sigma"] == 0 else "not measured" if pd.isna(cost_n) or cost_n == 0
                                  else f"{fmt_ci(first.noise_accuracy_cost_pp, first.noise_accuracy_cost_ci95, int(cost_n))}"
                                       f" pp (n={int(cost_n)})")
        display_rows.append(row)
    if "optimisation" in attacks and BASELINE in attacks:
        notes.append("optimisation beats the mean image (paired 95% CI above 0) everywhere" if not not_beaten else
                     f"optimisation does NOT beat the mean image (paired 95% CI) at: {'; '.join(not_beaten)}")
    missing = images[images.image < 0] if len(images) else images
    for _, r in missing[missing.note.fillna("").str.startswith("no run")].iterrows():
        notes.append(f"{method_label(r.method)} at split {r.head_blocks}/{r.tail_blocks}, round {r['round']}: "
                     "no run at this split in the grid, so only round 0 is attacked")
    notes += defence_notes(images)
    if (summary.sigma > 0).any():
        trained = summary[(summary.sigma > 0) & (summary.noise_accuracy_cost_n.fillna(0) > 0)]
        if len(trained):
            where = sorted({f"{method_label(r.method)} {r.head_blocks}/{r.tail_blocks} σ={r.sigma:g}"
                            for r in trained.itertuples()})
            notes.append("Noise defence: trained with the noise (method_params.smashed_noise_sigma) at "
                         f"{'; '.join(where)}; its final-round attacks use that run's own head state, and its accuracy "
                         "cost is paired by seed against the method's σ = 0 runs.")
        if ((summary.sigma > 0) & (summary.noise_accuracy_cost_n.fillna(0) == 0)).any():
            notes.append(f"Noise defence accuracy cost {NOT_MEASURED}.")
    notes.append("analytic and lmmse '–': not applicable (the client map is non-linear for head blocks >= 1); "
                 "analytic is the minimum-norm inverse, lmmse the inverse under the auxiliary images' patch prior, "
                 "noise-aware. Rounds: first = "
                 "the state broadcast in round 0; final = the aggregated client state after the last round.")
    return Table("privacy", summary, pd.DataFrame(display_rows), caption, list(dict.fromkeys(notes)))


def defence_notes(images: pd.DataFrame) -> list[str]:
    """One note per (split, method) searched for its defence σ (:mod:`benchmark.privacy.defence`): the σ found,
    as a multiple of the smashed tokens' rms, and the best attack's and the mean image's PSNR there."""
    if not len(images) or "note" not in images:
        return []
    found = images[images.note.fillna("").str.startswith("defence")]
    notes = []
    for (hb, tb, method, round_), grp in found.groupby(["head_blocks", "tail_blocks", "method", "round"], sort=True):
        scored = grp[grp.image >= 0]
        if scored.empty:
            notes.append(f"Defence σ, {hb}/{tb} {method_label(method)} ({round_}): {grp.note.iloc[0][len('defence: '):]}")
            continue
        psnr = scored.groupby("attack").psnr.mean()
        best = psnr.drop(BASELINE, errors="ignore").idxmax()
        sigma, rms = float(scored.sigma.iloc[0]), float(scored.smashed_rms.iloc[0])
        notes.append(f"Defence σ, {hb}/{tb} {method_label(method)} ({round_}): σ = {sigma:.3g} ({sigma / rms:.2g}× the "
                     f"smashed rms {rms:.2f}); there the best attack ({best}) recovers {psnr[best]:.1f} dB against the "
                     f"mean image's {psnr.get(BASELINE, math.nan):.1f} dB; accuracy cost not measured (no run trains "
                     f"at this σ). {scored.note.iloc[0].split('; ', 1)[1]}")
    return notes


@output("table", "privacy", _sources)
def _privacy_table(res: Results, src: Sources) -> Table:
    return privacy_table(load_privacy(res), src.runs, accuracy_runs(res))


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
        for attack in ORDER:
            key = f"{method}__{round_}__{attack}__0"
            if key not in arrays:
                continue
            hb, tb = (int(v) for v in split[1:].split("t"))
            s = summary[(summary.head_blocks == hb) & (summary.tail_blocks == tb) & (summary.method == method)
                        & (summary["round"] == round_) & (summary.sigma == 0) & (summary.attack == attack)
                        & (summary.server == STRONGEST)]
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


LABEL_CHAR = (0.021, 1.5)
"""About the width of one label character on the frontier's log x axis (decades; 6-pt text on a ~2-decade axis
5 inches wide) and the height of a label (dB): a label whose text would overlap an earlier one's within that
height is left out (SFL-V2's and SFPrompt's '0/0 σ=0.25' printed over each other, so did the
defence search's σs near the baseline); the privacy table lists every point."""
MARKER_NEAR = (0.03, 1.0)
"""Two frontier markers closer than this (decades, dB) cover each other; the title names them."""


def frontier(images: pd.DataFrame) -> Figure:
    """Best-attack PSNR against client FLOPs (% of FedAvg), one point per (method, split) and σ (σ = 0
    filled, noise hollow, joined per point), for the server that knows every aggregated part (:data:`STRONGEST`);
    dotted: the mean-image baseline. Markers that cover each other (SFL-V1 and SFL-V2 at 0/0, where their clients
    hold the same head) are named in the title, as the curve figures name methods of identical accuracies."""
    summary = summarise(images)
    if summary.empty:
        return _empty("no privacy results")
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    real = summary[(summary.attack != BASELINE) & summary.psnr_mean.notna() & (summary.server == STRONGEST)]
    labelled: list[tuple[str, float, float]] = []  # (text, log10 x, y) of the labels drawn so far
    points: list[tuple[str, str, float, float]] = []  # (method, label text, log10 x, y) of every marker
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
                text = f"{hb}/{tb}" + ("" if sigma == 0 else f" σ={sigma:.2g}")
                lx = float(np.log10(x))
                points.append((method, text, lx, float(y)))
                width = LABEL_CHAR[0] * (len(text) + 1)
                if not any(px - width < lx < px + LABEL_CHAR[0] * (len(t) + 1) and abs(py - y) < LABEL_CHAR[1]
                           for t, px, py in labelled):  # the two labels' extents overlap
                    labelled.append((text, lx, float(y)))
                    ax.annotate(text, (x, y), fontsize=6, xytext=(4, 2), textcoords="offset points")
    base = summary[summary.attack == BASELINE].psnr_mean
    if len(base):
        ax.axhline(float(base.mean()), color="grey", ls=":", lw=1, label="mean image (baseline)")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("client FLOPs per round, % of FedAvg (fvcore: 1 FLOP = 1 multiply-add)")
    ax.set_ylabel("best-attack PSNR, dB (higher = more leakage)")
    title = "Privacy-cost frontier (filled: no noise; hollow: noise σ)"
    covered = covering_markers(points)
    if covered:
        title += "\nmarkers on top of each other: " + "; ".join(
            f"{' and '.join(method_label(m) for m in methods)} at {', '.join(texts)}" for methods, texts in covered)
    ax.set_title(title, fontsize=9 if not covered else 8)
    ax.legend(fontsize=7)
    return fig


def covering_markers(points: list[tuple[str, str, float, float]]) -> list[tuple[tuple[str, ...], list[str]]]:
    """Methods whose frontier markers (``(method, label, log10 x, y)``) for one split and σ lie within
    :data:`MARKER_NEAR` of each other, with the labels where they do: ``[(methods, [labels])]``."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for text in dict.fromkeys(t for _, t, _, _ in points):
        here = [(m, lx, y) for m, t, lx, y in points if t == text]
        close = {m for m, lx, y in here for m2, lx2, y2 in here
                 if m2 != m and abs(lx - lx2) < MARKER_NEAR[0] and abs(y - y2) < MARKER_NEAR[1]}
        if close:
            groups.setdefault(tuple(m for m in dict.fromkeys(m for m, _, _ in here) if m in close), []).append(text)
    return list(groups.items())


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
    return privacy_claim(summarise(load_privacy(res)))


def privacy_claim(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The claims row from a :func:`summarise` frame: the strongest attack (highest mean PSNR) at 0/0, σ = 0."""
    row = {"claim": "privacy", "statement": "privacy-preserving: raw data never leaves the device",
           "paper": "qualitative", "source": "privacy attack", "ours_value": math.nan}
    sel = summary[(summary.head_blocks == 0) & (summary.tail_blocks == 0) & (summary.method == UNDER_STUDY)
                  & (summary.sigma == 0) & (summary.attack != BASELINE) & summary.psnr_mean.notna()
                  & (summary.server == STRONGEST)] \
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
