"""Render a results folder: tables (csv, md, tex), figures (pdf, png) and ``manifest.json``.

``python -m benchmark report --results DIR [--only tables|figures|manifest]``; the workflow runs the three
parts as separate rules. Each output is registered once in :data:`OUTPUTS` with the function that selects its
inputs, and the same selection feeds both the renderer and the manifest, so ``manifest.json`` lists exactly the runs (folder and config
hash) and files (accounting tables, partitions with their hash) behind every table and figure.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.io import atomic_path, git_revision, write_json, write_text
from benchmark.report import claims, figures, tables
from benchmark.report.load import Results, load_results
from benchmark.report.outputs import OUTPUTS, Sources, output
from benchmark.workflow.names import FIGURE_FORMATS, POOLED, RUNNER_UP, TABLE_FORMATS, UNDER_STUDY


def _method_runs(res: Results) -> pd.DataFrame:
    return res.with_role("method")


def _accounting_files(res: Results) -> list[dict[str, str]]:
    return [{"path": a["file"], "kind": "accounting"} for a in res.grid["accounting"]
            if (res.root / a["file"]).is_file()]


def _ablation_sources(res: Results) -> Sources:
    abl = res.with_role("ablation")
    full = _method_runs(res)
    full = full[full.method == UNDER_STUDY].merge(abl[tables.CELL].drop_duplicates(), on=tables.CELL)
    return Sources(pd.concat([abl, full.assign(role=UNDER_STUDY)], ignore_index=True))


def _partition_files(res: Results) -> list[dict[str, str]]:
    """The federated partitions (the pooled references' one-client partition shows nothing)."""
    return [{"path": v["file"], "kind": "partition", "hash": v["hash"]} for (_, partition, _), v in
            res.partition_files.items() if partition != POOLED]


def _methods(res: Results) -> Sources:
    return Sources(_method_runs(res))


def _with_references(res: Results) -> Sources:
    """Method runs plus the pooled-data references, each reference shown in every cell of its (backbone,
    dataset) under its own name (``method``) and label (``label``)."""
    runs = _method_runs(res)
    refs = res.with_role("reference")
    if len(refs) and len(runs):
        cells = runs[tables.CELL].drop_duplicates()
        spread = refs.drop(columns="partition").merge(cells, on=["backbone", "dataset"])
        runs = pd.concat([runs, spread.assign(method=spread.role, label=spread.role_value)], ignore_index=True)
    return Sources(runs)


def _with_accounting(res: Results) -> Sources:
    return Sources(_method_runs(res), _accounting_files(res))


def _curves_of(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    return res.curves[res.curves.dir.isin(set(runs.dir))] if len(runs) else res.curves.iloc[0:0]


# ----------------------------------------------------------------------------------------------------------
# tables


@output("table", "accuracy", _with_references)
def _accuracy(res: Results, src: Sources) -> tables.Table:
    table = tables.accuracy_table(src.runs)
    table.caption = tuning.tuning_note(res) + table.caption  # how the learning rates were chosen, if tuned
    return table


@output("table", "resources", _with_accounting)
def _resources(res: Results, src: Sources) -> tables.Table:
    return tables.resource_table(res.accounting, src.runs, res.grid["report"]["reference_method"])


def _claims_sources(res: Results) -> Sources:
    """The method runs, plus the recheck runs at the runner-up learning rates (``tuning.recheck``), which the
    claims table tells apart by ``lr_pick``."""
    runs, rechecks = _method_runs(res), res.with_role(RUNNER_UP)
    if len(rechecks):
        runs = pd.concat([runs, rechecks], ignore_index=True)
    return Sources(runs, _accounting_files(res) + privacy.privacy_files(res))


@output("table", "claims", _claims_sources)
def _claims(res: Results, src: Sources) -> tables.Table:
    report = res.grid["report"]
    settings = {(a["label"], a["split"]): a["settings"] for a in res.grid["accounting"]}
    sf = res.grid["config"]["method_settings"].get(claims.UNDER_STUDY, {})
    params = {k.split(".", 1)[1]: v for k, v in sf.items() if k.startswith("method_params.")}
    table = claims.claims_table(res.accounting, settings, src.runs, report["reference_method"],
                                report["claim_tolerance"], report["accuracy_margin"], params)
    return privacy.with_privacy_claim(table, res)


@output("table", "paired", _with_references)
def _paired(res: Results, src: Sources) -> tables.Table:
    return tables.paired_table(src.runs, res.grid["report"]["reference_method"])


@output("table", "ablation", _ablation_sources)
def _ablation(res: Results, src: Sources) -> tables.Table:
    variants = res.grid["config"]["ablations"].get("variants", {})
    runs = src.runs
    return tables.ablation_table(runs[runs.role != UNDER_STUDY], runs[runs.role == UNDER_STUDY], variants)


@output("table", "sensitivity", lambda r: Sources(r.with_role("sensitivity")))
def _sensitivity_table(res: Results, src: Sources) -> tables.Table:
    full = _method_runs(res)
    return tables.sensitivity_table(src.runs, full[full.method == UNDER_STUDY])


# ----------------------------------------------------------------------------------------------------------
# figures


@output("figure", "accuracy_vs_round", _methods)
def _accuracy_vs_round(res: Results, src: Sources):
    return figures.accuracy_vs_round(_curves_of(res, src.runs))


@output("figure", "accuracy_vs_comm", _methods)
def _accuracy_vs_comm(res: Results, src: Sources):
    return figures.accuracy_vs_comm(_curves_of(res, src.runs))


@output("figure", "flops_vs_accuracy", _methods)
def _flops_vs_accuracy(res: Results, src: Sources):
    return figures.flops_vs_accuracy(src.runs)


@output("figure", "partitions", lambda r: Sources(r.runs.iloc[0:0], _partition_files(r)))
def _partitions(res: Results, src: Sources):
    return figures.partition_heatmaps(res.histograms[res.histograms.partition != POOLED])


@output("figure", "sensitivity", lambda r: Sources(r.with_role("sensitivity")))
def _sensitivity_figure(res: Results, src: Sources):
    return figures.sensitivity(src.runs)


from benchmark.report import privacy  # noqa: E402  (registers the privacy table and figures; needs `output`)


def render_table(res: Results, name: str) -> tables.Table:
    """Build table ``name`` from its registered sources (an unknown name lists the valid ones)."""
    out = OUTPUTS["table"].get(name)
    return out.render(res, out.sources(res))


def render_figure(res: Results, name: str):
    """Build figure ``name`` from its registered sources with :mod:`benchmark.report.figures`."""
    out = OUTPUTS["figure"].get(name)
    return out.render(res, out.sources(res))


def write_table(table: tables.Table, folder: Path) -> list[Path]:
    """``{name}.csv`` (numeric data), ``{name}.md`` and ``{name}.tex`` (formatted, captioned)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {fmt: folder / f"{table.name}.{fmt}" for fmt in TABLE_FORMATS}
    with atomic_path(out["csv"]) as tmp:
        table.data.to_csv(tmp, index=False, float_format="%.6g")
    write_text(out["md"], tables.to_markdown(table))
    write_text(out["tex"], tables.to_latex(table))
    return list(out.values())


def save_figure(fig, stem: Path, formats=FIGURE_FORMATS, dpi: int = 150) -> list[Path]:
    """Write ``{stem}.{fmt}`` per format, atomically and without timestamps (byte-stable PDFs).

    The layout (constrained) is computed once, by the first format's save, and kept for the others: a figure with a
    layout engine is drawn twice per save (once to lay it out, once to render), so this saves a draw per further
    format and gives every format the same axes positions."""
    paths = []
    for i, fmt in enumerate(formats):
        path = stem.with_name(f"{stem.name}.{fmt}")
        meta = {"CreationDate": None, "ModDate": None} if fmt == "pdf" else {"Software": None}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)
        if i == 0:
            fig.set_layout_engine("none")
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------------------
# the manifest


def manifest(res: Results) -> dict[str, Any]:
    """Every table and figure file -> the runs (folder, config hash) and files behind it."""
    outputs: dict[str, Any] = {}
    for kind, names, formats in (("table", res.grid["tables"], TABLE_FORMATS),
                                 ("figure", res.grid["figures"], FIGURE_FORMATS)):
        for name in names:
            src = OUTPUTS[kind].get(name).sources(res)
            runs = src.runs.drop_duplicates("dir")
            entry = {
                "kind": kind, "name": name,
                "runs": [{"dir": d, "config_hash": h, "method": m, "variant": v, "seed": int(s)} for d, h, m, v, s in
                         zip(runs.dir, runs.config_hash, runs.method, runs.variant, runs.seed)],
                "files": src.files,
            }
            for fmt in formats:
                outputs[f"{kind}s/{name}.{fmt}"] = entry
    return {
        "format": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(Path(__file__).resolve().parent),
        "results": str(res.root),
        "paths_relative_to": "the results folder",
        "flop_convention": "fvcore: 1 FLOP = 1 multiply-add",
        "missing_runs": res.missing,
        "outputs": outputs,
    }


def build_report(root: str | Path, only: str = "all") -> list[Path]:
    """Render ``only`` (``all``, ``tables``, ``figures`` or ``manifest``) from ``root``; return the paths."""
    root = Path(root)
    res = load_results(root)
    written: list[Path] = []
    if only in ("all", "tables"):
        for name in res.grid["tables"]:
            written += write_table(render_table(res, name), root / "tables")
    if only in ("all", "figures"):
        (root / "figures").mkdir(parents=True, exist_ok=True)
        for name in res.grid["figures"]:
            written += save_figure(render_figure(res, name), root / "figures" / name)
    if only in ("all", "manifest"):
        path = root / "manifest.json"
        write_json(path, manifest(res))
        written.append(path)
    return written


from benchmark.report import strength as _strength  # noqa: E402,F401  (registers the backbone-strength outputs)
from benchmark.report import system as _system  # noqa: E402,F401  (registers the time-to-accuracy outputs)
from benchmark.report import tuning  # noqa: E402  (registers the tuning table; its caption note is used above)
