"""A clean command prints no warning: ``--help`` and a small, valid ``train`` run leave stderr free of warnings.

Each runs in a fresh interpreter with Python's default warning filters (pytest's own filters do not reach it),
so a library warning raised at import time, such as torch's ``torch.jit.script`` deprecation that
``import fvcore.nn`` triggers, shows up here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.test_bad_input import GOOD

ROOT = Path(__file__).resolve().parents[1]


def _stderr(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    proc = subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_help_prints_no_warning():
    assert "Warning" not in _stderr("--help")


def test_clean_train_run_prints_no_warning(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(GOOD))
    err = _stderr("train", "-c", str(cfg), "--set", f"data.cache_dir={tmp_path}/cache", "--out",
                  str(tmp_path / "run"), "-q")
    assert "Warning" not in err and "warnings.warn" not in err, err
    assert (tmp_path / "run" / "metrics.csv").is_file()
