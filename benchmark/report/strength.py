"""Backbone strength as an axis: the ``strength`` table and figure. Registered with
:func:`benchmark.report.outputs.output` (imported by ``build``).

A prompt-tuning method assumes a strong frozen backbone. The workflow's ``strength`` section fine-tunes
checkpoints saved along the one pre-training run of a backbone (``backbones/B@PCT.safetensors``, PCT% of the
epoch budget; ``B`` itself is 100%, whose runs are the main grid's) with each method, over the grid's seeds.
Each checkpoint's card (``backbones/B@PCT.json``, written by the pretrain rule) gives its strength: its top-1
accuracy on the source dataset's test split. Both outputs pair every run with its checkpoint through its
``strength`` role (name = the checkpoint's label, value = its fraction) and ``grid.json``'s ``strength`` list
(label -> card).

Units: accuracy in percent; federated accuracy is the final-round top-1 of the global model, mean ± half-width
of the Student-t 95% confidence interval over seeds (:func:`benchmark.stats.mean_ci`), with n.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.report.figures import _empty, _grid, accuracy_yerr, legend_below, method_style
from benchmark.report.load import Results
from benchmark.report.outputs import Sources, output
from benchmark.stats import CONFIDENCE, fmt_ci, mean_ci
from benchmark.report.tables import CELL, FLOP_NOTE, Table, _drop_constant, _test_note, method_label, order_methods
from benchmark.workflow.names import STRENGTH

CARD_COLUMNS = ["label", "backbone", "fraction", "source_dataset", "source_accuracy", "epoch", "card"]


def card_files(res: Results) -> list[dict[str, str]]:
    """The strength checkpoints' cards that exist, for the manifest."""
    return [{"path": e["card"], "kind": "backbone_card"} for e in res.grid.get(STRENGTH, [])
            if (res.root / e["card"]).is_file()]


def load_cards(res: Results) -> pd.DataFrame:
    """One row per strength checkpoint of ``grid.json``: ``label``, ``backbone``, ``fraction`` (of the
    pre-training budget), ``source_dataset``, ``source_accuracy`` (% top-1 on its test split; NaN without a
    card), ``epoch`` (epochs trained when saved, where the card says), ``card`` (path)."""
    rows = []
    for e in res.grid.get(STRENGTH, []):
        path = res.root / e["card"]
        card = json.loads(path.read_text()) if path.is_file() else {}
        acc = card.get("test_accuracy")
        rows.append({"label": e["label"], "backbone": e["backbone"], "fraction": float(e["fraction"]),
                     "source_dataset": card.get("source_dataset"),
                     "source_accuracy": 100 * float(acc) if acc is not None else np.nan,
                     "epoch": card.get("epoch", np.nan), "card": e["card"]})
    return pd.DataFrame(rows, columns=CARD_COLUMNS)


def _sources(res: Results) -> Sources:
    return Sources(res.with_role(STRENGTH), card_files(res))


def strength_data(points: pd.DataFrame, cards: pd.DataFrame) -> pd.DataFrame:
    """Per cell, method and checkpoint: the checkpoint's fraction and source accuracy, and the method's final
    accuracy over the runs that fine-tuned that checkpoint (mean, CI half-width, n).

    Args:
        points: Strength runs, one row per run: ``backbone, dataset, partition, method, seed, final_accuracy``,
            ``role`` (checkpoint label) and ``role_value`` (its fraction).
        cards: :func:`load_cards`.
    """
    rows = []
    for (*cell, method, label), grp in points.groupby(CELL + ["method", "role"], sort=False):
        m, h, n = mean_ci(grp.final_accuracy)
        rows.append({**dict(zip(CELL, cell)), "method": method, "checkpoint": label,
                     "fraction": float(grp.role_value.iloc[0]), "accuracy_mean": m, "accuracy_ci95": h, "seeds": n})
    data = pd.DataFrame(rows, columns=CELL + ["method", "checkpoint", "fraction", "accuracy_mean", "accuracy_ci95",
                                              "seeds"])
    info = cards[["label", "source_dataset", "source_accuracy", "epoch"]].rename(columns={"label": "checkpoint"})
    data = data.merge(info, on="checkpoint", how="left")
    order = {m: i for i, m in enumerate(order_methods(data.method))}
    data = data.assign(_m=data.method.map(order)).sort_values(CELL + ["_m", "fraction"], kind="stable")
    return data.drop(columns="_m").reset_index(drop=True)[
        CELL + ["method", "checkpoint", "fraction", "epoch", "source_dataset", "source_accuracy", "accuracy_mean",
                "accuracy_ci95", "seeds"]]


def strength_table(points: pd.DataFrame, cards: pd.DataFrame) -> Table:
    """Method × checkpoint: pre-training fraction, the checkpoint's source top-1, federated accuracy ± CI, n."""
    data = strength_data(points, cards)
    sources = ", ".join(sorted({str(s) for s in data.source_dataset.dropna()})) or "its source dataset"
    display = pd.DataFrame({
        "Backbone": data.backbone, "Dataset": data.dataset, "Partition": data.partition,
        "Method": [method_label(m) for m in data.method],
        "Checkpoint": data.checkpoint,
        "Pre-training (%)": [f"{100 * f:g}" for f in data.fraction],
        "Epoch": ["–" if pd.isna(e) else f"{float(e):g}" for e in data.epoch],
        f"Backbone top-1 on {sources} (%)": ["–" if pd.isna(a) else f"{a:.1f}" for a in data.source_accuracy],
        "Accuracy (%)": [fmt_ci(m, h, n) for m, h, n in zip(data.accuracy_mean, data.accuracy_ci95, data.seeds)],
        "n": data.seeds.astype(int).astype(str),
    })
    if data.epoch.isna().all():
        display = display.drop(columns="Epoch")
    display, notes = _drop_constant(display, ["Backbone", "Dataset", "Partition"])
    if data.source_accuracy.isna().any():
        notes.append("–: the checkpoint's card (backbones/LABEL.json) is missing or has no test_accuracy")
    caption = (f"Accuracy against backbone strength: each method fine-tunes checkpoints saved along one "
               f"pre-training run of the backbone (Checkpoint B@PCT: after PCT% of the pre-training epoch budget; "
               f"B: the end of pre-training, the main grid's runs). Backbone top-1: the checkpoint's top-1 accuracy "
               f"(%) on the test split of the pre-training dataset ({sources}), from its card. Accuracy: final-round "
               f"top-1 test accuracy (%) of the federated global model, mean ± half-width of the {CONFIDENCE:.0%} "
               f"confidence interval over n seeds (Student t). {_test_note(points)}{FLOP_NOTE}.")
    return Table(STRENGTH, data, display, caption, notes)


def strength_figure(points: pd.DataFrame, cards: pd.DataFrame) -> Figure:
    """Final accuracy per method (markers, error bars: 95% CI over seeds) against the checkpoint's source top-1,
    one panel per (backbone, dataset, partition). Methods keep their colour, marker and line style; markers are
    hollow and shrink in table order, so methods with identical points stay visible, and a panel names them."""
    data = strength_data(points, cards)
    if data.empty:
        return _empty("no backbone-strength runs")
    cells = list(dict.fromkeys(map(tuple, data[CELL].itertuples(index=False))))
    fig, axes = _grid(len(cells), size=(4.5, 3.4))
    by_card = not data.source_accuracy.isna().any()
    sources = ", ".join(sorted({str(s) for s in data.source_dataset.dropna()}))
    for ax, cell in zip(axes, cells):
        sub = data[(data[CELL] == pd.Series(cell, index=CELL)).all(axis=1)]
        methods = order_methods(sub.method)
        for i, method in enumerate(methods):
            rows = sub[sub.method == method].sort_values("fraction")
            xs = rows.source_accuracy if by_card else 100 * rows.fraction
            style = method_style(method)
            ax.errorbar(xs, rows.accuracy_mean, yerr=accuracy_yerr(rows.accuracy_mean, rows.accuracy_ci95),
                        color=style["color"], marker=style["marker"], linestyle=style["linestyle"], markersize=max(3.0, 8.0 - 1.5 * i),
                        markerfacecolor="none", capsize=2, linewidth=1.2, label=method_label(method))
        ticks = sub.drop_duplicates("checkpoint").sort_values("fraction")
        xs = ticks.source_accuracy if by_card else 100 * ticks.fraction
        ax.set_xticks(list(xs), [f"{x:.1f}\n({100 * f:g}%)" if by_card else f"{100 * f:g}%"
                                 for x, f in zip(xs, ticks.fraction)], fontsize=7)
        same = _identical(points[(points[CELL] == pd.Series(cell, index=CELL)).all(axis=1)], methods)
        if same:
            text = "; ".join(" = ".join(method_label(m) for m in g) for g in same)
            ax.text(0.02, 0.02, f"identical: {text}", transform=ax.transAxes, fontsize=6, va="bottom")
        ax.set_title(" · ".join(map(str, cell)), fontsize=9)
        ax.set_xlabel(f"backbone top-1 on {sources} (%)\n(share of pre-training)" if by_card
                      else "share of the pre-training budget")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3)
    legend_below(fig, axes)
    fig.suptitle(f"Accuracy against backbone strength\n(error bars: {CONFIDENCE:.0%} CI over seeds)", fontsize=10)
    return fig


def _identical(points: pd.DataFrame, methods: list[str]) -> list[list[str]]:
    """Groups of methods whose per-(checkpoint, seed) accuracies coincide exactly."""
    groups: dict[tuple, list[str]] = {}
    for m in methods:
        g = points[points.method == m].sort_values(["role_value", "seed"])
        groups.setdefault(tuple(np.round(g.final_accuracy.to_numpy(), 9)), []).append(m)
    return [g for g in groups.values() if len(g) > 1]


@output("table", STRENGTH, _sources)
def _strength_table(res: Results, src: Sources) -> Table:
    return strength_table(src.runs, load_cards(res))


@output("figure", STRENGTH, _sources)
def _strength_figure(res: Results, src: Sources):
    return strength_figure(src.runs, load_cards(res))
