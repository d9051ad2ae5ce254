"""Are two results folders' runs and tuning points the same, file for file? (``python scripts/identical_runs.py A B``)

The check behind "results byte-identical for unchanged settings" (issue 26): every file under ``runs/`` and
``tuning/`` of A must exist in B and be equal, byte for byte, except what legitimately differs between two runs
of the same settings: ``metrics.csv`` is compared without its ``git_revision`` column, ``env.json`` (machine,
wall time, paths) and checkpoints are skipped, and tuning records (JSON) are compared as data. Prints a summary
and the first differences; exit status 1 when any file differs or is missing, 0 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

SKIPPED = {"env.json", "checkpoint.pt"}


def same(a: Path, b: Path) -> bool:
    if a.name == "metrics.csv":
        return pd.read_csv(a).drop(columns=["git_revision"]).equals(pd.read_csv(b).drop(columns=["git_revision"]))
    if a.suffix == ".json":
        return json.loads(a.read_text()) == json.loads(b.read_text())
    return a.read_bytes() == b.read_bytes()


def compare(a_root: Path, b_root: Path) -> tuple[int, list[str]]:
    """(files equal, problems): each problem names a differing or missing file, relative to the roots."""
    equal, problems = 0, []
    for sub in ("runs", "tuning"):
        for a in sorted((a_root / sub).rglob("*")):
            if not a.is_file() or a.name in SKIPPED:
                continue
            rel = a.relative_to(a_root)
            b = b_root / rel
            if not b.is_file():
                problems.append(f"missing in B: {rel}")
            elif same(a, b):
                equal += 1
            else:
                problems.append(f"differs: {rel}")
    return equal, problems


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not all(Path(p, "runs").is_dir() for p in argv):
        print("usage: python scripts/identical_runs.py RESULTS_A RESULTS_B (two results folders with runs/)",
              file=sys.stderr)
        return 2
    equal, problems = compare(Path(argv[0]), Path(argv[1]))
    print(f"{equal} files equal, {len(problems)} differ or are missing")
    for line in problems[:20]:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
