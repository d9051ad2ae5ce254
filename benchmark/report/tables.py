"""The benchmark's tables: pure functions from tidy DataFrames to a :class:`Table`, and its three formats.

A :class:`Table` holds numeric ``data`` (written as CSV, one row per quantity, for further analysis), a
formatted ``display`` frame (Markdown and booktabs LaTeX, ``\\input``-ready with caption and label), the
caption (which names the units and the FLOP convention) and notes printed under the table.

Units everywhere: accuracy in percent (top-1, final round, global model on the test split), FLOPs in GFLOPs
(1e9) in fvcore's convention (1 FLOP = 1 multiply-add), traffic in MB (1e6 bytes), all per participating
client per round unless a column says otherwise. Accuracy is the mean ± the half-width of a 95% confidence
interval over seeds (Student t, :mod:`benchmark.stats`); n is the number of seeds. Method names and
their order come from the method classes (``label``, ``order``), never from a list here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import pandas as pd

from benchmark.methods import METHODS, ordered
from benchmark.stats import CONFIDENCE, binomial_se, fmt_accuracy, fmt_signed_ci, mean_ci, paired_difference
from benchmark.study import BASELINE

MINIMAL_READING = "paper_minimal_traffic"
"""The accounting reading that sends only the rows the receiver reads (SFPrompt's ``minimal_traffic``)."""
FLOP_NOTE = ("FLOPs in fvcore's convention (1 FLOP = 1 multiply-add), GFLOPs = 1e9 FLOPs; "
             "MB = 1e6 bytes")
CELL = ["backbone", "dataset", "partition"]


@dataclass
class Table:
    """One rendered table.

    Attributes:
        name: File stem (``tables/{name}.{csv,md,tex}``) and LaTeX label suffix (``tab:{name}``).
        data: Numeric frame, written as CSV.
        display: Formatted strings, written as Markdown and LaTeX.
        caption: States what is measured, the units and the FLOP convention.
        notes: Lines printed under the table (caveats, settings).
    """

    name: str
    data: pd.DataFrame
    display: pd.DataFrame
    caption: str
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------
# formatting helpers


def method_label(name: str, runs: pd.DataFrame | None = None) -> str:
    """A reference run's own ``label`` (from ``runs``), else the method class's ``label`` (the paper's
    spelling); an unregistered name is shown as it is."""
    if runs is not None and "label" in runs:
        hit = runs.loc[(runs.method == name) & runs.label.notna(), "label"]
        if len(hit):
            return str(hit.iloc[0])
    return METHODS.get(name).label if name in METHODS else name


def order_methods(names: Iterable[str], runs: pd.DataFrame | None = None) -> list[str]:
    """Names in table order (each class's ``order``), unregistered names last; with ``runs``, the reference
    runs (those with a ``label``) after every method."""
    names = ordered(names)
    if runs is not None and "label" in runs:
        refs = set(runs.loc[runs.label.notna(), "method"])
        names = [n for n in names if n not in refs] + [n for n in names if n in refs]
    return names


def fmt_num(x: float, digits: int = 3) -> str:
    """Significant-digit formatting for quantities spanning orders of magnitude (GFLOPs, MB, %)."""
    if x is None or pd.isna(x):
        return "–"
    if math.isinf(x):
        return "∞"
    if x != 0 and (abs(x) >= 10 ** (digits + 2) or abs(x) < 10 ** -(digits)):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}" if abs(x) < 10 ** digits else f"{x:,.0f}"


def fmt_count(n: float) -> str:
    """Parameter counts: ``85.8M``, ``16.9k``, ``512``."""
    if n is None or pd.isna(n):
        return "–"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{int(n)}"


def split_text(head: int, tail: int) -> str:
    return f"{int(head)}/{int(tail)}"


def _drop_constant(display: pd.DataFrame, columns: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
    """Drop columns that hold one value throughout; return the frame and ``"column: value"`` notes."""
    notes = []
    for col in columns:
        if col in display and len(display) and display[col].nunique() == 1:
            notes.append(f"{col}: {display[col].iloc[0]}")
            display = display.drop(columns=col)
    return display, notes


def cell_table(name: str, data: pd.DataFrame, display: pd.DataFrame, caption: str,
               constant: Iterable[str] = ("Backbone",)) -> Table:
    """A :class:`Table` whose display leaves out the ``constant`` cell columns that hold one value throughout
    (named in its notes instead)."""
    display, notes = _drop_constant(display, constant)
    return Table(name, data, display, caption, notes)


# ----------------------------------------------------------------------------------------------------------
# the tables


def _test_note(runs: pd.DataFrame) -> str:
    """Caption sentence on the test-set size, with the binomial SE a subsampled test set implies."""
    if "test_images" not in runs or runs.test_images.isna().all():
        return ""
    sizes = sorted({int(n) for n in runs.test_images.dropna()})
    text = f"Evaluated on {'/'.join(f'{n:,}' for n in sizes)} test images"
    if "test_split_full" in runs and not runs.test_split_full.fillna(True).all():
        se = binomial_se(50.0, min(sizes))
        text += (f" (a subsample of the test split: one run's accuracy has a binomial standard error of up to "
                 f"{se:.1f} pp)")
    return text + ". "


def accuracy_table(runs: pd.DataFrame) -> Table:
    """Final test accuracy, dataset × partition × method: mean ± 95% CI over seeds, with n.

    Args:
        runs: Method runs (one row per run) with ``backbone, dataset, partition, method, seed,
            final_accuracy`` (optionally ``test_images``, ``test_split_full``).
    """
    rows = []
    for key, grp in runs.groupby(CELL + ["method"], sort=False):
        m, h, n = mean_ci(grp.final_accuracy)
        rows.append({**dict(zip(CELL + ["method"], key)), "accuracy_mean": m, "accuracy_ci95": h, "seeds": n,
                     "diverged_seeds": diverged_seeds(grp)})
    data = pd.DataFrame(rows, columns=CELL + ["method", "accuracy_mean", "accuracy_ci95", "seeds", "diverged_seeds"])
    methods = order_methods(data.method, runs)
    seeds = sorted(set(data.seeds)) if len(data) else [0]
    display_rows = []
    for key, grp in data.groupby(CELL, sort=False):
        row = {"Backbone": key[0], "Dataset": key[1], "Partition": key[2]}
        for m in methods:
            hit = grp[grp.method == m]
            if not len(hit):
                row[method_label(m, runs)] = "–"
                continue
            mean, half, n, div = hit[["accuracy_mean", "accuracy_ci95", "seeds", "diverged_seeds"]].iloc[0]
            row[method_label(m, runs)] = (fmt_accuracy(mean, half, int(n), int(div))
                                          + (f" (n={int(n)})" if len(seeds) > 1 and not div else ""))
        display_rows.append(row)
    caption = (f"Final-round top-1 test accuracy (%) of the global model: mean ± half-width of the "
               f"{CONFIDENCE:.0%} confidence interval over n = {'/'.join(map(str, seeds))} seed(s) (Student t); "
               f"one seed shows the mean alone. {_reference_note(runs)}{_test_note(runs)}{FLOP_NOTE}.")
    return cell_table("accuracy", data, pd.DataFrame(display_rows), caption)


def diverged_seeds(runs: pd.DataFrame) -> int:
    """How many of these runs diverged (their training loss became non-finite: a result, not an error)."""
    return int(runs.diverged.fillna(False).astype(bool).sum()) if "diverged" in runs else 0


def _reference_note(runs: pd.DataFrame) -> str:
    if "label" not in runs or runs.label.isna().all():
        return ""
    labels = ", ".join(dict.fromkeys(runs.label.dropna()))
    return (f"References ({labels}) are trained on the pooled training data (one client, the same seeds, rounds "
            f"and sample passes) and repeated in every partition of their dataset. ")


def _paired_reference_note(runs: pd.DataFrame, methods: Iterable[str]) -> str:
    """What a reference's paired difference shares with the federated run it is paired with: only the seed."""
    if "label" not in runs:
        return ""
    shown = set(methods)
    labels = list(dict.fromkeys(runs.label[runs.method.isin(shown) & runs.label.notna()]))
    if not labels:
        return ""
    return (f"References ({', '.join(labels)}) are trained on the pooled training data (one client): they do not "
            f"share the partition or the client sampling, so their difference is paired by the seed (the "
            f"initialisation and batch-order streams) alone. ")


def paired_table(runs: pd.DataFrame, reference: str = BASELINE) -> Table:
    """Per cell and method: accuracy − ``reference``'s, paired by seed, with its 95% CI and n."""
    rows = []
    for key, grp in runs.groupby(CELL, sort=False):
        ref = grp[grp.method == reference].groupby("seed").final_accuracy.mean()
        for m in order_methods(grp.method, runs):
            if m == reference or not len(ref):
                continue
            mine = grp[grp.method == m].groupby("seed").final_accuracy.mean()
            d, h, n = paired_difference(mine, ref)
            rows.append({**dict(zip(CELL, key)), "method": m, "reference": reference, "diff_mean": d,
                         "diff_ci95": h, "seeds": n})
    data = pd.DataFrame(rows, columns=CELL + ["method", "reference", "diff_mean", "diff_ci95", "seeds"])
    display = pd.DataFrame({
        "Backbone": data.backbone, "Dataset": data.dataset, "Partition": data.partition,
        "Method": [method_label(m, runs) for m in data.method],
        f"Δ vs {method_label(reference)} (pp)": [fmt_signed_ci(m, h, n) for m, h, n in
                                                  zip(data.diff_mean, data.diff_ci95, data.seeds)],
        "n": data.seeds.astype(int).astype(str),
    })
    caption = (f"Final-round test accuracy of each method minus {method_label(reference)}'s in the same cell, in "
               f"percentage points, paired by seed (for the federated methods: same partition, initialisation and "
               f"client sampling): mean ± half-width of the {CONFIDENCE:.0%} Student-t confidence interval of the "
               f"per-seed differences; an interval that contains 0 shows no detectable difference. "
               f"{_paired_reference_note(runs, data.method)}{FLOP_NOTE}.")
    return cell_table("paired", data, display, caption)


def resource_table(accounting: pd.DataFrame, runs: pd.DataFrame, reference: str = BASELINE) -> Table:
    """Per method: client-stored and trainable parameters, client GFLOPs and MB per round, and each relative
    to ``reference``; analytic (``accounting`` verb) for every accounted backbone and split, plus the
    measured per-round cost of the trained backbones' runs at the same split.

    Args:
        accounting: Concatenated accounting CSVs with ``label``, ``head_blocks``, ``tail_blocks``.
        runs: Method runs with ``backbone, method, head_blocks, tail_blocks, client_gflops_round,
            comm_mb_round``.
        reference: Method the percentages are relative to.
    """
    if accounting.empty:
        empty = pd.DataFrame(columns=["label", "method"])
        return Table("resources", empty, empty, f"No accounting tables were computed. {FLOP_NOTE}.")
    keys = ["label", "head_blocks", "tail_blocks"]
    measured = runs.groupby(["backbone", "head_blocks", "tail_blocks", "method"])[
        ["client_gflops_round", "comm_mb_round"]].mean() if len(runs) else pd.DataFrame()
    rows = []
    if "reading" not in accounting:
        accounting = accounting.assign(reading="default")
    for key, all_readings in accounting.groupby(keys, sort=False):
        grp = all_readings[all_readings.reading == "default"]
        minimal = all_readings[all_readings.reading == MINIMAL_READING].set_index("method").comm_mb_total
        ref = grp[grp.method == reference]
        for r in grp.itertuples(index=False):
            mkey = (r.label, r.head_blocks, r.tail_blocks, r.method)
            meas = measured.loc[mkey] if len(measured) and mkey in measured.index else None
            rows.append({
                "label": r.label, "backbone": r.backbone, "head_blocks": r.head_blocks, "tail_blocks": r.tail_blocks,
                "samples_per_client": r.samples_per_client, "method": r.method,
                "client_params_stored": r.client_params_stored, "client_params_trainable": r.client_params_trainable,
                "client_gflops_round": r.client_gflops_round, "comm_mb_up": r.comm_mb_up,
                "comm_mb_down": r.comm_mb_down, "comm_mb_total": r.comm_mb_total,
                "comm_mb_total_minimal": float(minimal.get(r.method, math.nan)),
                **{f"{col}_pct_of_ref": 100 * getattr(r, col) / ref[col].iloc[0] if len(ref) else math.nan
                   for col in ("client_params_stored", "client_params_trainable", "client_gflops_round",
                               "comm_mb_up", "comm_mb_down", "comm_mb_total")},
                "measured_client_gflops_round": meas.client_gflops_round if meas is not None else math.nan,
                "measured_comm_mb_round": meas.comm_mb_round if meas is not None else math.nan,
            })
    data = pd.DataFrame(rows)
    ref_label = method_label(reference)
    def with_pct(col: str, fmt) -> list[str]:
        return [f"{fmt(v)} ({fmt_num(p)}%)" for v, p in zip(data[col], data[f"{col}_pct_of_ref"])]

    display = pd.DataFrame({
        "Backbone": data.label, "Split (h/t)": [split_text(h, t) for h, t in zip(data.head_blocks, data.tail_blocks)],
        "Samples/client": data.samples_per_client.astype(int).astype(str),
        "Method": data.method.map(method_label),
        "Client params stored": with_pct("client_params_stored", fmt_count),
        "Client params trainable": with_pct("client_params_trainable", fmt_count),
        "Client GFLOPs/round": with_pct("client_gflops_round", fmt_num),
        "Up MB/round": with_pct("comm_mb_up", fmt_num), "Down MB/round": with_pct("comm_mb_down", fmt_num),
        "Minimal MB/round": data.comm_mb_total_minimal.map(fmt_num),
        f"Comm. % of {ref_label}": data.comm_mb_total_pct_of_ref.map(fmt_num),
        "Measured GFLOPs/round": data.measured_client_gflops_round.map(fmt_num),
        "Measured MB/round": data.measured_comm_mb_round.map(fmt_num),
    })
    if data.measured_client_gflops_round.isna().all():
        display = display.drop(columns=["Measured GFLOPs/round", "Measured MB/round"])
    if data.comm_mb_total_minimal.isna().all():
        display = display.drop(columns=["Minimal MB/round"])
    caption = (f"Client resources per participating client per round, analytic (accounting verb: the methods' "
               f"own cost hooks on random weights) at each backbone's split point (head/tail blocks on the "
               f"client) and samples per client; in parentheses, each relative to {ref_label} (%); 'Measured' columns "
               f"average the runs' ledgers of the same backbone and split; 'Minimal MB/round' is SFPrompt's traffic "
               f"when only the rows the receiver reads are sent (minimal_traffic; the other columns: whole "
               f"activations). Parameters: k = 1e3, M = 1e6. "
               f"{FLOP_NOTE}; MB up + down = total traffic.")
    return Table("resources", data, display, caption)


def _variant_table(rows: list[dict], name: str, caption: str, lead: list[tuple[str, str]]) -> Table:
    data = pd.DataFrame(rows)
    if data.empty:
        return Table(name, data, data, caption)
    display = pd.DataFrame({
        **{title: data[col].astype(str) for title, col in lead},
        "Backbone": data.backbone, "Dataset": data.dataset, "Partition": data.partition,
        "Accuracy (%)": [fmt_accuracy(m, h, n, d) for m, h, n, d in
                         zip(data.accuracy_mean, data.accuracy_ci95, data.seeds, data.diverged_seeds)],
        "Δ vs SFPrompt (pp)": [fmt_signed_ci(m, h, n) for m, h, n in
                               zip(data.delta_pp, data.delta_ci95, data.delta_seeds)],
        "Client GFLOPs/round": data.client_gflops_round.map(fmt_num),
        "MB/round": data.comm_mb_round.map(fmt_num),
    })
    return cell_table(name, data, display, caption, ["Backbone", "Dataset", "Partition"])


def _summarise(grp: pd.DataFrame, full: pd.DataFrame) -> dict:
    """Accuracy mean ± CI of a variant and its change against full SFPrompt, paired by seed."""
    m, h, n = mean_ci(grp.final_accuracy)
    d, dh, dn = paired_difference(grp.groupby("seed").final_accuracy.mean(),
                                  full.groupby("seed").final_accuracy.mean())
    return {"accuracy_mean": m, "accuracy_ci95": h, "seeds": n, "diverged_seeds": diverged_seeds(grp),
            "delta_pp": d, "delta_ci95": dh,
            "delta_seeds": dn, "client_gflops_round": grp.client_gflops_round.mean(),
            "comm_mb_round": grp.comm_mb_round.mean()}


def ablation_table(variants: pd.DataFrame, full: pd.DataFrame, settings: Mapping[str, Mapping]) -> Table:
    """SFPrompt against its ablations, per cell: accuracy, its change, and the measured per-round cost.

    Args:
        variants: Ablation runs with ``role`` (the ablation name) and the run summary columns.
        full: SFPrompt method runs of the same cells (the reference row).
        settings: Ablation name -> its RunConfig overrides (printed in the table).
    """
    rows = []
    for cell, grp in variants.groupby(CELL, sort=False):
        ref = full[(full[CELL] == pd.Series(cell, index=CELL)).all(axis=1)]
        rows.append({"variant": "SFPrompt (full)", "setting": "base settings", **dict(zip(CELL, cell)), **_summarise(ref, ref)})
        for name in settings:
            sub = grp[grp.role == name]
            if len(sub):
                text = ", ".join(f"{k}={v}" for k, v in settings[name].items())
                rows.append({"variant": name.replace("_", " "), "setting": text, **dict(zip(CELL, cell)), **_summarise(sub, ref)})
    caption = ("SFPrompt ablations: each variant changes one setting of the full method (no pruning: keep every "
               "sample; no local-loss update; no prompts; no server gradient for the prompts). Final-round test "
               "accuracy (%): mean ± 95% CI over seeds (Student t); its change against full SFPrompt in "
               "percentage points, paired by seed, with its 95% CI; and "
               f"the measured client GFLOPs and MB (up + down) per participating client per round. {FLOP_NOTE}.")
    return _variant_table(rows, "ablation", caption, [("Variant", "variant"), ("Setting", "setting")])


def sensitivity_table(points: pd.DataFrame, full: pd.DataFrame) -> Table:
    """SFPrompt's one-at-a-time sensitivity to keep_ratio, prompt_len and the split point.

    Args:
        points: Sensitivity runs with ``role`` (the parameter) and ``role_value``.
        full: SFPrompt method runs (for the change against the base setting).
    """
    rows = []
    for (param, value, *cell), grp in points.groupby(["role", "role_value"] + CELL, sort=False):
        ref = full[(full[CELL] == pd.Series(cell, index=CELL)).all(axis=1)]
        rows.append({"parameter": param, "value": value, **dict(zip(CELL, cell)), **_summarise(grp, ref)})
    data = pd.DataFrame(rows)
    if len(data):
        data["_order"] = data.value.map(_sort_key)
        data = data.sort_values(["parameter", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)
    caption = ("SFPrompt sensitivity, one setting varied at a time around the base configuration (keep_ratio: "
               "fraction of samples kept by EL2N pruning; prompt_len: prompt tokens; split: transformer blocks "
               "head/tail on the client). Final-round test accuracy (%): mean ± 95% CI over seeds (Student t); "
               f"change against the base setting (pp, paired by seed, with its 95% CI); measured client GFLOPs and MB per participating client per round. {FLOP_NOTE}.")
    return _variant_table(data.to_dict("records") if len(data) else [], "sensitivity", caption,
                          [("Parameter", "parameter"), ("Value", "value")])


def _sort_key(value) -> float:
    """Numeric order for sweep values; ``h1t2`` splits by client blocks, then head blocks."""
    if isinstance(value, str):
        m = re.fullmatch(r"h(\d+)t(\d+)", value)
        if m:
            h, t = int(m.group(1)), int(m.group(2))
            return (h + t) * 1000 + h
        return math.inf
    return float(value)


# ----------------------------------------------------------------------------------------------------------
# formats


def to_markdown(table: Table) -> str:
    """Caption, a GitHub-style table, then the notes."""
    body = table.display.to_markdown(index=False) if len(table.display) else "_(no results)_"
    notes = "".join(f"\n- {n}" for n in table.notes)
    return f"**Table ({table.name}).** {table.caption}\n\n{body}\n{notes}\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "×": r"$\times$",
        "Δ": r"$\Delta$", "–": "--", "∞": r"$\infty$", "≈": r"$\approx$", "→": r"$\rightarrow$",
        "≤": r"$\leq$", "≥": r"$\geq$"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment with caption and ``tab:{name}`` label, ready for ``\\input``.

    Columns of long text get a paragraph (``p{}``) column; tables wider than eight columns are scaled to
    the line width (``graphicx``'s ``\\resizebox``).
    """
    display = table.display if len(table.display) else pd.DataFrame({"": ["(no results)"]})
    escaped = display.map(tex_escape)
    escaped.columns = [tex_escape(c) for c in display.columns]
    align = "".join(_tex_align(display[c]) for c in display.columns)
    body = escaped.to_latex(index=False, escape=False, column_format=align)
    if len(display.columns) > 8:
        body = f"\\resizebox{{\\linewidth}}{{!}}{{%\n{body}}}\n"
    notes = "".join(f"\\par\\footnotesize {tex_escape(n)}\n" for n in table.notes)
    return ("% Generated by `python -m benchmark report`; needs \\usepackage{booktabs} (and graphicx).\n"
            "\\begin{table}[htbp]\n\\centering\n\\small\n"
            f"\\caption{{{tex_escape(table.caption)}}}\n\\label{{tab:{table.name}}}\n"
            f"{body}{notes}\\end{{table}}\n")


def _tex_align(col: pd.Series) -> str:
    if _numeric_column(col):
        return "r"
    longest = max((len(str(v)) for v in col), default=0)
    return f"p{{{min(0.3, 0.006 * longest):.2f}\\linewidth}}" if longest > 40 else "l"


def _numeric_column(col: pd.Series) -> bool:
    pattern = re.compile(r"^[-+]?[\d.,]+(e[-+]?\d+)?\s*(± [\d.]+)?[kMG%]?$|^–$")
    return len(col) > 0 and all(pattern.match(str(v)) for v in col)
