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

A job run in the fork server's child (:mod:`benchmark.prefork`, local runs) does its work outside the process
Snakemake samples, which only waits: its benchmark file reads almost no CPU. The server writes each such job's
exact CPU seconds and peak memory (``wait4``) to ``logs/prefork-jobs.tsv``; :func:`read_job_files` adds them to
the job's row (matched by the job's log file, ``<job>.log``) and marks the row ``exact``.

The span is the time from the first job's start to the last job's end, each inferred from its file's
modification time (written when the job ends) minus its wall seconds: the elapsed time of the workflow's jobs,
without Snakemake's own start-up and DAG building (a few seconds), and only if they were all run by one
invocation (a resumed workflow's span includes the pause).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import BenchmarkError
from benchmark.prefork import USAGE_FILE

SUFFIX = ".benchmark.tsv"


def _rule(path: Path, results: Path) -> str:
    parts = path.relative_to(results).parts
    if parts[0] == "logs" and len(parts) > 2:
        return parts[1]
    return "cache" if "cache" in parts else parts[0]


def read_job_files(results: str | Path) -> pd.DataFrame:
    """One row per timed job under ``results``: rule, job (path), wall_s, cpu_s, max_rss_mb, end (epoch s), exact
    (CPU and memory measured by the fork server, not sampled)."""
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
    return _with_fork_usage(pd.DataFrame(rows), results)


def _fork_usage(results: Path, jobs: set[str]) -> pd.DataFrame:
    """The fork server's usage rows, keyed by job (the last run of each): ``job, cpu_s, max_rss_mb``. A row names
    the job's log by its absolute path at run time; it is matched to ``<job>.log`` from any ``/logs/`` in it on,
    so a moved or renamed results folder still matches."""
    path = results / "logs" / USAGE_FILE
    if not path.is_file():
        return pd.DataFrame(columns=["job", "cpu_s", "max_rss_mb"])
    try:
        usage = pd.read_csv(path, sep="\t", dtype={"stdout": str}, keep_default_na=False)
        usage = usage[["stdout", "start", "cpu_s", "max_rss_mb"]]
    except (KeyError, ValueError, pd.errors.ParserError) as exc:
        raise BenchmarkError(f"fork server usage file {str(path)!r} is unreadable ({exc})") from None

    def job(stdout: str) -> str | None:
        if not stdout.endswith(".log"):
            return None
        at = stdout.find("/logs/")
        while at >= 0:
            if stdout[at + 1:-4] in jobs:
                return stdout[at + 1:-4]
            at = stdout.find("/logs/", at + 1)
        return None

    usage = usage.assign(job=usage.stdout.map(job)).dropna(subset=["job"])
    return usage.sort_values("start").drop_duplicates("job", keep="last")[["job", "cpu_s", "max_rss_mb"]]


def _with_fork_usage(rows: pd.DataFrame, results: Path) -> pd.DataFrame:
    """``rows`` with the fork server's exact CPU seconds added and peak memory taken where it ran the job."""
    usage = _fork_usage(results, set(rows.job)).set_index("job")
    exact = rows.job.isin(usage.index)
    hit = rows.job[exact]
    rows = rows.assign(exact=exact)
    if not exact.any():
        return rows
    rows.loc[exact, "cpu_s"] = rows.cpu_s[exact].fillna(0).to_numpy() + usage.cpu_s.reindex(hit).to_numpy()
    rows.loc[exact, "max_rss_mb"] = np.fmax(rows.max_rss_mb[exact].to_numpy(dtype=float),
                                            usage.max_rss_mb.reindex(hit).to_numpy(dtype=float))
    return rows


def job_costs(results: str | Path) -> tuple[pd.DataFrame, float]:
    """Per-rule totals (jobs, wall_s, cpu_s, max wall of one job, peak RSS) and the span in seconds."""
    jobs = read_job_files(results)
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("job", "size"), wall_s=("wall_s", "sum"), cpu_s=("cpu_s", "sum"),
        longest_job_s=("wall_s", "max"), max_rss_mb=("max_rss_mb", "max"), exact_jobs=("exact", "sum"))
    table = table.sort_values("cpu_s", ascending=False).reset_index()
    total = pd.DataFrame([{"rule": "all", "jobs": int(table.jobs.sum()), "wall_s": table.wall_s.sum(),
                           "cpu_s": table.cpu_s.sum(), "longest_job_s": table.longest_job_s.max(),
                           "max_rss_mb": table.max_rss_mb.max(), "exact_jobs": int(table.exact_jobs.sum())}])
    span = float(jobs.end.max() - (jobs.end - jobs.wall_s).min())
    return pd.concat([table, total], ignore_index=True), span


def format_costs(table: pd.DataFrame, span: float) -> str:
    """The table as Markdown, with the span and the (sampled) CPU time."""
    shown = table.copy()
    for col in ("wall_s", "cpu_s", "longest_job_s", "max_rss_mb"):
        shown[col] = shown[col].map(lambda v: f"{v:,.0f}")
    cpu = float(table.cpu_s.iloc[-1])
    exact = int(table.exact_jobs.iloc[-1]) if "exact_jobs" in table else 0
    jobs = int(table.jobs.iloc[-1])
    how = ("sampled by Snakemake: cpu_s and max_rss_mb are lower bounds" if not exact else
           "exact for all jobs (the fork server's wait4)" if exact == jobs else
           f"exact for the {exact} jobs the fork server ran, sampled by Snakemake for the other {jobs - exact}: "
           f"lower bounds")
    return (shown.to_markdown(index=False) + f"\n\nspan (first job start to last job end): {span / 60:.1f} min; "
            f"CPU time at least {cpu / 60:.1f} min ({how})")
