"""``report``, ``costs``, ``compare``: read results folders, write tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.io import write_csv
from benchmark.report.build import build_report, write_table
from benchmark.report.compare import compare as compare_results
from benchmark.report.costs import format_costs, job_costs
from benchmark.report.tables import to_markdown


def report(a: argparse.Namespace) -> int:
    outputs = build_report(Path(a.results), only=a.only)
    print(f"wrote {len(outputs)} files under {a.results}")
    return 0


def costs(a: argparse.Namespace) -> int:
    table, span = job_costs(a.results)
    if a.out:
        write_csv(a.out, table)
    print(format_costs(table, span))
    return 0


def compare(a: argparse.Namespace) -> int:
    result = compare_results(a.results_a, a.results_b)
    for table in result.tables:
        print(to_markdown(table), end="\n\n")
        if a.out:
            write_table(table, Path(a.out))
    print(result.summary())
    return 0 if result.ok else 1
