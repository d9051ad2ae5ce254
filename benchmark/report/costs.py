"""What a workflow run cost, from the files Snakemake's ``benchmark:`` directive writes beside each job's log.

Every timed rule (cache, partition, pretrain, train, account, and the report's grid, tables, figures and
manifest) writes ``<log>.benchmark.tsv``: the job's wall seconds (``s``), CPU seconds (``cpu_time``, the job's
processes together) and peak resident memory (``max_rss``, MB), measured by Snakemake around the shell
command. :func:`job_costs` gathers them per rule; ``python -m benchmark costs`` prints the table.

Wall seconds are exact. CPU seconds and peak memory are *samples*: Snakemake polls the job's processes every
0.5 s for its first 15 s, then every 30 s, so up to 30 s of a long job's CPU time (the part after its last
poll) is missing and the figures are lower bounds (on the default profile: 1,617 sampled vs 2,061 CPU
seconds measured by ``/usr/bin/time`` around the whole workflow). For exact CPU time, time the workflow.
A job shorter than the first poll reads 0 CPU seconds, or ``NA`` (NaN here) when no poll landed in it at
all; sums skip NaN, so the totals stay lower bounds.

The span is the time from the first job's start to the last job's end, each inferred from its file's
modification time (written when the job ends) minus its wall seconds: the elapsed time of the workflow's jobs,
without Snakemake's own start-up and DAG building (a few seconds), and only if they were all run by one
invocation (a resumed workflow's span includes the pause).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.errors import BenchmarkError

SUFFIX = ".benchmark.tsv"


def _rule(path: Path, results: Path) -> str:
    parts = path.relative_to(results).parts
    if parts[0] == "logs" and len(parts) > 2:
        return parts[1]
    return "cache" if "cache" in parts else parts[0]


def read_job_files(results: str | Path) -> pd.DataFrame:
    """One row per timed job under ``results``: rule, job (path), wall_s, cpu_s, max_rss_mb, end (epoch s)."""
    results = Path(results)
    rows = []
    for path in sorted(results.rglob(f"*{SUFFIX}")):
        try:
            t = pd.read_csv(path, sep="\t")
            last = t.iloc[-1]  # Snakemake appends one line per repeat; the suite asks for one
            rows.append({"rule": _rule(path, results), "job": str(path.relative_to(results))[: -len(SUFFIX)],
                         "wall_s": float(last["s"]), "cpu_s": float(last["cpu_time"]),
                         "max_rss_mb": float(last["max_rss"]), "end": path.stat().st_mtime})
        except (KeyError, IndexError, ValueError, pd.errors.ParserError) as exc:
            raise BenchmarkError(f"job timing file {str(path)!r} is not a Snakemake benchmark file ({exc})") from None
    if not rows:
        raise BenchmarkError(f"no job timing files (*{SUFFIX}) under {str(results)!r}: run the workflow first")
    return pd.DataFrame(rows)


def job_costs(results: str | Path) -> tuple[pd.DataFrame, float]:
    """Per-rule totals (jobs, wall_s, cpu_s, max wall of one job, peak RSS) and the span in seconds."""
    jobs = read_job_files(results)
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("job", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
        longest_job_s=("wall_s", "max"), max_rss_mb=("max_rss_mb", "max"))
    table = table.sort_values("cpu_s", ascending=False).reset_index()
    total = pd.DataFrame([{"rule": "all", "jobs": int(table.jobs.sum()), "wall_s": table.wall_s.sum(),
                           "cpu_s": table.cpu_s.sum(), "longest_job_s": table.longest_job_s.max(),
                           "max_rss_mb": table.max_rss_mb.max()}])
    span = float(jobs.end.max() - (jobs.end - jobs.wall_s).min())
    return pd.concat([table, total], ignore_index=True), span


def format_costs(table: pd.DataFrame, span: float) -> str:
    """The table as Markdown, with the span and the (sampled) CPU time."""
    shown = table.copy()
    for col in ("wall_s", "cpu_s", "longest_job_s", "max_rss_mb"):
        shown[col] = shown[col].map(lambda v: f"{v:,.0f}")
    cpu = float(table.cpu_s.iloc[-1])
    return (shown.to_markdown(index=False) + f"\n\nspan (first job start to last job end): {span / 60:.1f} min; "
            f"CPU time at least {cpu / 60:.1f} min (sampled by Snakemake: cpu_s and max_rss_mb are lower bounds)")
