"""Render a results folder: tables (csv, md, tex), figures (pdf, png) and ``manifest.json``.

``python -m benchmark report --results DIR [--only tables|figures|manifest]``; the workflow runs the three
parts as separate rules. Each output's inputs are chosen once, in :data:`SOURCES`, and the same selection
feeds both the renderer and the manifest, so ``manifest.json`` lists exactly the runs (folder and config
hash) and files (accounting tables, partitions with their hash) behind every table and figure.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from benchmark.io import atomic_path, git_revision, write_json, write_text
from benchmark.report import claims, figures, tables
from benchmark.report.load import Results, load_results
from benchmark.workflow import FIGURE_FORMATS, TABLE_FORMATS


@dataclass
class Sources:
    """What one output is drawn from: run summaries (``runs``) and other result files."""

    runs: pd.DataFrame
    files: list[dict[str, str]] = field(default_factory=list)


def _method_runs(res: Results) -> pd.DataFrame:
    return res.with_role("method")


def _accounting_files(res: Results) -> list[dict[str, str]]:
    return [{"path": a["file"], "kind": "accounting"} for a in res.grid["accounting"]
            if (res.root / a["file"]).is_file()]


def _ablation_sources(res: Results) -> Sources:
    abl = res.with_role("ablation")
    full = _method_runs(res)
    full = full[full.method == "sfprompt"].merge(abl[tables.CELL].drop_duplicates(), on=tables.CELL)
    return Sources(pd.concat([abl, full.assign(role="sfprompt")], ignore_index=True))


def _partition_files(res: Results) -> list[dict[str, str]]:
    return [{"path": v["file"], "kind": "partition", "hash": v["hash"]} for v in res.partition_files.values()]


SOURCES: dict[str, Callable[[Results], Sources]] = {
    "accuracy": lambda r: Sources(_method_runs(r)),
    "resources": lambda r: Sources(_method_runs(r), _accounting_files(r)),
    "claims": lambda r: Sources(_method_runs(r), _accounting_files(r)),
    "ablation": _ablation_sources,
    "sensitivity": lambda r: Sources(r.with_role("sensitivity")),
    "accuracy_vs_round": lambda r: Sources(_method_runs(r)),
    "accuracy_vs_comm": lambda r: Sources(_method_runs(r)),
    "flops_vs_accuracy": lambda r: Sources(_method_runs(r)),
    "partitions": lambda r: Sources(r.runs.iloc[0:0], _partition_files(r)),
}
"""Output name -> its inputs (tables and figures share names where they show the same runs)."""


# ----------------------------------------------------------------------------------------------------------
# renderers


def _curves_of(res: Results, runs: pd.DataFrame) -> pd.DataFrame:
    return res.curves[res.curves.dir.isin(set(runs.dir))] if len(runs) else res.curves.iloc[0:0]


def render_table(res: Results, name: str) -> tables.Table:
    """Build table ``name`` from its :data:`SOURCES`."""
    src = SOURCES[name](res).runs
    report = res.grid["report"]
    if name == "accuracy":
        return tables.accuracy_table(src)
    if name == "resources":
        return tables.resource_table(res.accounting, src, report["reference_method"])
    if name == "claims":
        settings = {(a["label"], a["split"]): a["settings"] for a in res.grid["accounting"]}
        return claims.claims_table(res.accounting, settings, src, report["reference_method"],
                                   report["claim_tolerance"])
    if name == "ablation":
        variants = res.grid["config"]["ablations"].get("variants", {})
        return tables.ablation_table(src[src.role != "sfprompt"], src[src.role == "sfprompt"], variants)
    if name == "sensitivity":
        full = _method_runs(res)
        return tables.sensitivity_table(src, full[full.method == "sfprompt"])
    raise KeyError(f"unknown table {name!r}")


def render_figure(res: Results, name: str):
    """Build figure ``name`` from its :data:`SOURCES` with :mod:`benchmark.report.figures`."""
    src = SOURCES[name](res).runs
    if name == "accuracy_vs_round":
        return figures.accuracy_vs_round(_curves_of(res, src))
    if name == "accuracy_vs_comm":
        return figures.accuracy_vs_comm(_curves_of(res, src))
    if name == "flops_vs_accuracy":
        return figures.flops_vs_accuracy(src)
    if name == "partitions":
        return figures.partition_heatmaps(res.histograms)
    if name == "sensitivity":
        return figures.sensitivity(src)
    raise KeyError(f"unknown figure {name!r}")


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
    """Write ``{stem}.{fmt}`` per format, atomically and without timestamps (byte-stable PDFs)."""
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        meta = {"CreationDate": None, "ModDate": None} if fmt == "pdf" else {"Software": None}
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, metadata=meta)
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
            src = SOURCES[name](res)
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
