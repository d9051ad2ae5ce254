"""scripts/identical_runs.py: two results folders' runs equal file for file, git revision and env.json aside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def results(root: Path, value: float = 0.5, revision: str = "aaa") -> Path:
    run = root / "runs" / "b" / "d" / "iid" / "fedavg" / "seed0"
    run.mkdir(parents=True)
    pd.DataFrame({"round": [0], "metric": ["accuracy"], "value": [value], "git_revision": [revision]}).to_csv(
        run / "metrics.csv", index=False)
    (run / "comm.csv").write_text("round,bytes\n0,10\n")
    (run / "env.json").write_text(f'{{"wall_seconds_this_process": {value * 100}}}')
    (root / "tuning" / "b" / "d").mkdir(parents=True)
    (root / "tuning" / "b" / "d" / "fedavg.json").write_text('{"chosen_lr": 0.02, "grid": [1, 3]}')
    return root


def check(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "identical_runs.py"), str(a), str(b)],
                          capture_output=True, text=True)


def test_runs_that_differ_only_in_git_revision_and_env_are_identical(tmp_path):
    proc = check(results(tmp_path / "a"), results(tmp_path / "b", revision="bbb"))
    assert proc.returncode == 0 and proc.stdout.startswith("3 files equal, 0 differ"), proc.stdout


def test_a_changed_value_or_a_missing_file_is_named_and_fails(tmp_path):
    a = results(tmp_path / "a")
    proc = check(a, results(tmp_path / "b", value=0.51))
    assert proc.returncode == 1 and "differs: runs/b/d/iid/fedavg/seed0/metrics.csv" in proc.stdout
    c = results(tmp_path / "c")
    (c / "runs" / "b" / "d" / "iid" / "fedavg" / "seed0" / "comm.csv").unlink()
    proc = check(a, c)
    assert proc.returncode == 1 and "missing in B: runs/b/d/iid/fedavg/seed0/comm.csv" in proc.stdout
    assert check(a, tmp_path / "nowhere").returncode == 2
