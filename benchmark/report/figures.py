"""The benchmark's figures: pure functions, a tidy DataFrame in, a :class:`matplotlib.figure.Figure` out.

No pyplot and no global state: each function builds its own ``Figure`` (render it with ``fig.savefig`` or
display it in a notebook). Inputs are the frames of :class:`benchmark.report.load.Results` (``curves``,
``runs``, ``histograms``, role selections); curves are averaged over seeds with a band (error bars on points)
of the 95% Student-t confidence interval of the mean (:mod:`benchmark.stats`). Each method has a fixed
colour, marker and line style, and a panel notes methods whose curves coincide exactly (SFL-V1 = FedAvg under
full participation), so no curve hides another unannounced.

Units: accuracy in percent; communication in MB (1e6 bytes) cumulated over all clients; FLOPs in GFLOPs in
fvcore's convention (1 FLOP = 1 multiply-add), per participating client per round.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from benchmark.stats import CONFIDENCE, mean_ci, seed_band
from benchmark.report.tables import CELL, _sort_key, method_label, order_methods
from benchmark.methods import ordered

_COLORS = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#AA3377", "#66CCEE", "#BBBBBB", "#000000"]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
_DASHES = ["-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (8, 2)), (0, (3, 1, 1, 1, 1, 1))]


def method_style(method: str) -> dict:
    """A fixed colour, marker and line style per method (the same in every figure): its index in the table
    order of every registered method, unregistered names after them in first-seen order."""
    names = ordered()
    i = names.index(method) if method in names else len(names) + sum(map(ord, method)) % 3
    return {"color": _COLORS[i % len(_COLORS)], "marker": _MARKERS[i % len(_MARKERS)],
            "linestyle": _DASHES[i % len(_DASHES)]}


def _grid(n: int, ncols: int = 3, size: tuple[float, float] = (4.0, 3.0), **subplot_kw) -> tuple[Figure, list]:
    """A figure with exactly ``n`` panels: as few rows as ``ncols`` columns allow, then as few columns as those
    rows need (4 panels are 2 × 2, not 2 × 3 with two empty ones); no axes are made for the free slots."""
    n = max(n, 1)
    nrows = math.ceil(n / max(1, ncols))
    ncols = math.ceil(n / nrows)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    axes: list = []
    for i in range(n):
        shared = {"sharey": axes[0]} if subplot_kw.get("sharey") and axes else {}
        axes.append(fig.add_subplot(nrows, ncols, i + 1, **shared))
    return fig, axes


def legend_below(fig: Figure, axes: list) -> None:
    """One legend for the whole figure, below the panels (never over a curve), built from every panel's labelled
    artists in first-seen order."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=min(len(entries), 5),
                   fontsize=8, frameon=False)


def mean_band(ax, xs, mean, half, method: str, markersize: float = 3) -> None:
    """One method's curve: the mean over seeds in the method's style and label and, unless ``half`` is None, the
    mean ± ``half`` band (accuracies, %) clipped to the [0, 100] an accuracy can take (a CI over few seeds,
    t = 12.7 for two, would otherwise swamp the panel)."""
    style = method_style(method)
    ax.plot(xs, mean, label=method_label(method), color=style["color"], marker=style["marker"],
            linestyle=style["linestyle"], markersize=markersize, linewidth=1.4)
    if half is not None:
        ax.fill_between(xs, (mean - half).clip(lower=0), (mean + half).clip(upper=100), color=style["color"],
                        alpha=0.15, linewidth=0)


def log_x(ax, fmt=lambda v: f"{v:g}") -> None:
    """A log x axis labelled at 1, 2 and 5 × 10^k with plain numbers (``fmt``), no minor labels."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def accuracy_yerr(mean, half) -> np.ndarray:
    """Error bars ``[below, above]`` for accuracies ``mean`` ± ``half`` (%), clipped to the [0, 100] an accuracy can
    take (a CI over few seeds, t = 12.7 for two, would otherwise reach far below 0). NaN half-widths draw none."""
    mean = np.atleast_1d(np.asarray(mean, dtype=float))
    half = np.nan_to_num(np.atleast_1d(np.asarray(half, dtype=float)))
    return np.vstack([np.minimum(half, mean), np.minimum(half, 100 - mean)])


def _cells(frame: pd.DataFrame) -> list[tuple]:
    return list(dict.fromkeys(map(tuple, frame[CELL].itertuples(index=False)))) if len(frame) else []


def _title(cell: tuple, show_backbone: bool) -> str:
    backbone, dataset, partition = cell
    return f"{backbone} · {dataset} · {partition}" if show_backbone else f"{dataset} · {partition}"


def _empty(message: str) -> Figure:
    fig = Figure(figsize=(5, 2.5))
    ax = fig.subplots()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _coinciding(frame: pd.DataFrame, y: str) -> list[list[str]]:
    """Groups of methods whose ``y`` per (seed, round) are identical in ``frame`` (one cell)."""
    series = {m: tuple(np.round(g.sort_values(["seed", "round"])[y].to_numpy(), 9))
              for m, g in frame.groupby("method") if "round" in g}
    groups: dict[tuple, list[str]] = {}
    for m in order_methods(series):
        groups.setdefault(series[m], []).append(m)
    return [g for g in groups.values() if len(g) > 1]


def _method_panels(frame: pd.DataFrame, draw, xlabel: str, ylabel: str, logx: bool, title: str) -> Figure:
    """One panel per (backbone, dataset, partition) cell; ``draw(ax, rows, method, style)`` plots each method's
    rows of that cell, in the table's method order."""
    if frame.empty:
        return _empty("no finished runs")
    cells = _cells(frame)
    fig, axes = _grid(len(cells))
    show_backbone = frame.backbone.nunique() > 1
    for ax, cell in zip(axes, cells):
        sub = frame[(frame[CELL] == pd.Series(cell, index=CELL)).all(axis=1)]
        for method in order_methods(sub.method):
            draw(ax, sub[sub.method == method], method, method_style(method))
        same = _coinciding(sub, "accuracy") if "accuracy" in sub else []
        if same:
            text = "; ".join(" = ".join(method_label(m) for m in g) for g in same)
            # "accuracies", not "curves": on the communication axis the same accuracies lie at different x
            ax.text(0.02, 0.02, f"identical accuracies: {text}", transform=ax.transAxes, fontsize=6, va="bottom")
        if logx:
            log_x(ax)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(_title(cell, show_backbone), fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    legend_below(fig, axes)
    fig.suptitle(title, fontsize=10)
    return fig


def _curve_panels(curves: pd.DataFrame, x: str, xlabel: str, logx: bool, title: str) -> Figure:
    def draw(ax, runs: pd.DataFrame, method: str, style: dict) -> None:
        band = seed_band(runs, "round", "accuracy")
        mean_band(ax, seed_band(runs, "round", x)["mean"].to_numpy(), band["mean"], band["half"], method)

    # the note on its own line: after the communication figure's title it ran past both edges of the figure
    return _method_panels(curves, draw, xlabel, "test accuracy (%)", logx, title + interim_note(curves, sep="\n"))


def interim_note(curves: pd.DataFrame, sep: str = "; ") -> str:
    """Title suffix (after ``sep``) when rounds before the last were scored on fewer test images
    (``train.interim_eval_samples``), else empty."""
    n = curves["eval_samples"].dropna() if "eval_samples" in curves else pd.Series(dtype=float)
    if n.empty or n.min() == n.max():
        return ""
    return f"{sep}points before the last round: {int(n.min()):,} of the {int(n.max()):,} test images"


def accuracy_vs_round(curves: pd.DataFrame) -> Figure:
    """Test accuracy of the global model per round, one panel per (backbone, dataset, partition).

    Args:
        curves: ``backbone, dataset, partition, method, seed, round, accuracy`` (method runs).
    """
    frame = curves.assign(round_1=curves["round"] + 1) if len(curves) else curves
    return _curve_panels(frame, "round_1", "round", False,
                         f"Accuracy vs round (mean over seeds, band: {CONFIDENCE:.0%} CI)")


def accuracy_vs_comm(curves: pd.DataFrame) -> Figure:
    """Test accuracy against cumulative communication (all clients, up + down, MB; log scale).

    Args:
        curves: As :func:`accuracy_vs_round`, with ``comm_mb_cumulative``.
    """
    return _curve_panels(curves, "comm_mb_cumulative", "cumulative communication (MB, log)", True,
                         f"Accuracy vs cumulative communication (band: {CONFIDENCE:.0%} CI over seeds)")


DODGE = 10 ** 0.025
"""Factor between the x of markers that share a client cost in :func:`flops_vs_accuracy` (a 6% step on its log
axis, about a marker's width)."""


def flops_vs_accuracy(runs: pd.DataFrame) -> Figure:
    """Client GFLOPs per participating client per round (log) against final test accuracy, per method.

    Args:
        runs: ``backbone, dataset, partition, method, seed, final_accuracy, client_gflops_round``.
    """

    placed: dict[tuple[int, float], int] = {}  # (panel, cost rounded to 0.01 decade): methods drawn there

    def draw(ax, pts: pd.DataFrame, method: str, style: dict) -> None:
        mean, half, n = mean_ci(pts.final_accuracy)
        yerr = accuracy_yerr(mean, half) if n > 1 else None
        x = float(pts.client_gflops_round.mean())
        key = (id(ax), round(float(np.log10(x)), 2))
        k = placed[key] = placed.get(key, -1) + 1  # SFL-V1 and SFL-V2 share a client cost: one marker hid the other
        ax.errorbar(x * DODGE ** k, mean, yerr=yerr, fmt=style["marker"], color=style["color"],
                    label=method_label(method), capsize=2)

    fig = _method_panels(runs, draw, "client GFLOPs per client-round (log)", "final test accuracy (%)", True,
                         f"Client computation vs final accuracy (error bars: {CONFIDENCE:.0%} CI over seeds; "
                         "fvcore FLOPs: 1 FLOP = 1 multiply-add)")
    if any(k > 0 for k in placed.values()):
        fig.suptitle(f"{fig.get_suptitle()}\nmarkers of one client cost drawn {DODGE - 1:.0%} apart, so that "
                     "none hides another", fontsize=10)
    return fig


def partition_heatmaps(histograms: pd.DataFrame) -> Figure:
    """Samples per class held by each client (client × class), one panel per (dataset, partition); classes are
    labelled by the dataset's names (``class_name``) where it has them.

    Args:
        histograms: ``dataset, partition, seed, client, class, count`` and optionally ``class_name`` (the first
            seed of each is drawn).
    """
    if histograms.empty:
        return _empty("no partition files")
    first = histograms[histograms.seed == histograms.groupby(["dataset", "partition"]).seed.transform("min")]
    keys = list(dict.fromkeys(map(tuple, first[["dataset", "partition"]].itertuples(index=False))))
    fig, axes = _grid(len(keys), ncols=2, size=(4.5, 3.6))
    for ax, (dataset, partition) in zip(axes, keys):
        sub = first[(first.dataset == dataset) & (first.partition == partition)]
        mat = sub.pivot_table(index="client", columns="class", values="count", aggfunc="sum").fillna(0)
        im = ax.imshow(mat.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_title(f"{dataset} · {partition} (seed {int(sub.seed.iloc[0])})", fontsize=9)
        ax.set_ylabel("client")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("class")
        names = sub.drop_duplicates("class").set_index("class").get("class_name")
        if names is not None and len(mat.columns) <= 20:
            labels = [str(names[c]) for c in mat.columns]
            slanted = max(map(len, labels)) > 2  # words are slanted to fit; digits stay upright
            ax.set_xticks(range(len(mat.columns)), labels, fontsize=7, rotation=60 if slanted else 0,
                          ha="right" if slanted else "center", rotation_mode="anchor")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.colorbar(im, ax=ax, label="samples")
    fig.suptitle("Client partitions (samples per client and class)", fontsize=10)
    return fig


def sensitivity(points: pd.DataFrame) -> Figure:
    """SFPrompt's final accuracy against keep_ratio, prompt_len and split point, one panel per parameter.

    Args:
        points: ``role`` (parameter), ``role_value``, ``backbone, dataset, partition``, ``seed``,
            ``final_accuracy`` (sensitivity runs).
    """
    if points.empty:
        return _empty("no sensitivity runs")
    params = [p for p in ("keep_ratio", "prompt_len", "split") if p in set(points.role)] + sorted(
        set(points.role) - {"keep_ratio", "prompt_len", "split"})
    fig, axes = _grid(len(params))
    cells = _cells(points)
    for ax, param in zip(axes, params):
        sub = points[points.role == param]
        values = sorted(set(sub.role_value), key=_sort_key)
        categorical = any(isinstance(v, str) for v in values)
        for i, cell in enumerate(cells):
            c = sub[(sub[CELL] == pd.Series(cell, index=CELL)).all(axis=1)]
            if c.empty:
                continue
            band = seed_band(c, "role_value", "final_accuracy").set_index("role_value").reindex(
                [v for v in values if v in set(c.role_value)])
            xs = [values.index(v) for v in band.index] if categorical else list(band.index)
            ax.errorbar(xs, band["mean"], yerr=accuracy_yerr(band["mean"], band["half"]),
                        marker=_MARKERS[i % len(_MARKERS)], color=_COLORS[i % len(_COLORS)], capsize=2,
                        label=" · ".join(map(str, cell)))
        if categorical:
            ax.set_xticks(range(len(values)), [_split_tick(v) for v in values])
        ax.set_xlabel({"keep_ratio": "keep_ratio (fraction kept by EL2N)", "prompt_len": "prompt tokens",
                       "split": "client blocks head/tail"}.get(param, param))
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3)
    legend_below(fig, axes)
    fig.suptitle(f"SFPrompt sensitivity (one setting at a time; error bars: {CONFIDENCE:.0%} CI over seeds)",
                 fontsize=10)
    return fig


def _split_tick(value) -> str:
    text = str(value)
    return text[1:].replace("t", "/") if text.startswith("h") and "t" in text else text
