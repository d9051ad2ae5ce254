"""The tuning table: each method's learning rate as chosen on the validation split (:mod:`benchmark.tuning`).

Reads the tuning records listed in ``grid.json`` (``tuning/{backbone}/{dataset}/{method}.json``); registered
as the ``tuning`` table, rendered when the profile has a ``tuning`` section.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from benchmark.report.load import Results
from benchmark.report.outputs import Sources, output
from benchmark.report.tables import Table, _drop_constant, fmt_num, method_label, order_methods
from benchmark.tuning import CRITERION, tuning_table_rows


def tuning_records(res: Results) -> list[dict[str, Any]]:
    """The tuning records that exist, in grid order."""
    out = []
    for entry in res.grid.get("tuning", []):
        path = res.root / entry["file"]
        if path.is_file():
            out.append(json.loads(path.read_text()))
    return out


def tuning_note(res: Results) -> str:
    """Caption sentence for tables of tuned runs (empty without tuning)."""
    records = tuning_records(res)
    if not records:
        return ""
    grid = ", ".join(f"{m:g}" for m in records[0]["grid"])
    return (f"Learning rates chosen per backbone, dataset and method on a validation split held out of the "
            f"training data ({records[0]['validation_fraction']:.0%}, partition {records[0]['partition']}, "
            f"tuning seed(s) {_seeds(records[0])}, disjoint from the final seeds; grid {grid} x the base lr; the "
            f"smallest lr within {records[0].get('near_tie', 0):g} standard error(s) of the best mean final-round "
            f"validation accuracy; table tuning), never on the test split. ")


def _seeds(doc: dict[str, Any]) -> str:
    return ", ".join(map(str, doc.get("seeds", [doc.get("seed")])))


def tuning_table(records: list[dict[str, Any]], share: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None) -> Table:
    """Chosen learning rate and its validation accuracy per search (backbone, dataset, and a method or a pooled
    reference), plus the whole grid.

    Args:
        records: Tuning records (:func:`benchmark.tuning.gather`).
        share: ``tuning.share`` (method -> the method whose choice it takes), stated in a note.
        labels: How a pooled reference's search is spelled (its ``label``); methods use their class's label.
    """
    share, labels = share or {}, labels or {}

    def name(doc: dict[str, Any]) -> str:
        search = doc.get("search", doc["method"])
        return f"{labels[search]} (pooled)" if search in labels else method_label(doc["method"])

    data = tuning_table_rows(records)
    rows = []
    by_key = {(d["backbone"], d["dataset"], d.get("search", d["method"])): d for d in records}
    for backbone, dataset in dict.fromkeys((d["backbone"], d["dataset"]) for d in records):
        searches = [m for (b, ds, m) in by_key if (b, ds) == (backbone, dataset)]
        methods = order_methods([m for m in searches if m not in labels])
        for search in methods + [m for m in searches if m in labels]:
            doc = by_key[(backbone, dataset, search)]
            second = doc.get("runner_up_lr")
            row = {"Backbone": backbone, "Dataset": dataset, "Method": name(doc),
                   "Chosen lr": f"{doc['chosen_lr']:g} (×{doc['chosen_multiplier']:g})",
                   "Validation acc. (%)": _acc(doc["chosen_val_accuracy"]),
                   "SE (pp)": _se(doc.get("standard_error")),
                   "Runner-up lr": "–" if second is None else f"{second:g} (×{doc['runner_up_multiplier']:g})"}
            for p in doc["points"]:
                mark = " *" if p["lr"] == doc["chosen_lr"] else " †" if p["lr"] == second else ""
                row[f"×{p['multiplier']:g}"] = f"{_acc(p['val_accuracy'])} @ {p['lr']:g}{mark}"
            rows.append(row)
    display = pd.DataFrame(rows)
    display, notes = _drop_constant(display, ["Backbone"])
    if any(d["all_diverged"] for d in records):
        notes.append("every grid point diverged for: " + ", ".join(
            f"{d['backbone']}/{d['dataset']}/{name(d)}" for d in records if d["all_diverged"])
            + " (the smallest lr is used)")
    edge = [d for d in records if not d["all_diverged"] and len(d["grid"]) > 1
            and d["chosen_multiplier"] in (min(d["grid"]), max(d["grid"]))]
    if edge:
        notes.append("chosen on the grid's edge, so the best learning rate may lie beyond it (widen tuning.grid): "
                     + ", ".join(f"{d['backbone']}/{d['dataset']}/{name(d)} "
                                 f"(×{d['chosen_multiplier']:g}, the "
                                 f"{'largest' if d['chosen_multiplier'] == max(d['grid']) else 'smallest'})"
                                 for d in edge))
    first = records[0] if records else {"validation_fraction": float("nan"), "partition": "–", "seeds": ["–"]}
    caption = (f"Learning rates chosen by one procedure (benchmark/tuning.py): per backbone, dataset and method or "
               f"pooled reference, "
               f"one run per grid multiplier of the method's base learning rate on the training data minus a "
               f"stratified validation split ({fmt_num(100 * first['validation_fraction'])}% of the training "
               f"set; partition {first['partition']}, tuning seed(s) {_seeds(first)}, disjoint from the final seeds), "
               f"scored by the {CRITERION} (near_tie {first.get('near_tie', 0):g}; SE: the binomial standard error "
               f"of the best mean over the validation images and seeds). † marks the runner-up, the rate a choice "
               f"could have gone to. "
               f"Cells: top-1 validation accuracy (%) @ learning rate; * marks the choice, which every run of "
               f"that method (SFPrompt's ablation and sensitivity variants too) trains with; each pooled reference "
               f"('pooled') searches its own on one client holding the pooled training data. The test split is not "
               f"used.")
    if share:
        notes.append("not tuned, takes another method's choice (its training is that method's arithmetic): "
                     + ", ".join(f"{method_label(m)} takes {method_label(src)}'s" for m, src in share.items()))
    return Table("tuning", data, display, caption, notes)


def _acc(value: float | None) -> str:
    return "diverged" if value is None else f"{100 * value:.1f}"


def _se(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _sources(res: Results) -> Sources:
    files = []
    for entry in res.grid.get("tuning", []):
        if (res.root / entry["file"]).is_file():
            files.append({"path": entry["file"], "kind": "tuning"})
            files += [{"path": f"{d}/metrics.csv", "kind": "tuning_run"} for d in entry["runs"]]
    return Sources(res.runs.iloc[0:0], files)


@output("table", "tuning", _sources)
def _tuning(res: Results, src: Sources) -> Table:
    refs = res.grid.get("config", {}).get("references", {}).get("pooled", {})
    return tuning_table(tuning_records(res), res.grid.get("tuning_share", {}),
                        {name: ref.get("label", name) for name, ref in refs.items()})
