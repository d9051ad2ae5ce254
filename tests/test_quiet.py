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

import pytest
import yaml

from benchmark import prefork
from tests.conftest import BACKGROUND, start_process
from tests.test_bad_input import GOOD

ROOT = Path(__file__).resolve().parents[1]


def _plain_env() -> dict[str, str]:
    """A user's environment: no ``PYTHONWARNINGS`` (the tests' processes set it), no fork server."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", prefork.SOCKET_ENV)}


def _stderr(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, env=_plain_env(), capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_help_prints_no_warning():
    assert "Warning" not in _stderr("--help")


def _clean_train_args(folder: Path) -> list[str]:
    (folder / "run.yaml").write_text(yaml.safe_dump(GOOD))
    return ["train", "-c", str(folder / "run.yaml"), "--set", f"data.cache_dir={folder}/cache", "--out",
            str(folder / "run"), "-q"]


def start_clean_train_run() -> None:
    """Start the clean train run in the background (tests/conftest.py: ``PROCESS_STARTS``): a plain process that
    imports everything itself, ~10 s alone and 20 s beside the workflows, which no fork server may shorten (its
    warnings at import time are the subject)."""
    start_process("clean_train_run", "a clean train run", _clean_train_args, _plain_env())


@pytest.fixture(scope="session")
def clean_train_run() -> tuple[Path, str]:
    """(its output folder, its standard error) once the clean train run has exited with status 0."""
    start_clean_train_run()
    run = BACKGROUND["clean_train_run"]
    run.wait()
    return run.folder / "run", run.stderr.read_text()


def test_clean_train_run_prints_no_warning(clean_train_run):
    out, err = clean_train_run
    assert "Warning" not in err and "warnings.warn" not in err, err
    assert (out / "metrics.csv").is_file()
