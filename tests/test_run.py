"""A whole run from the CLI: its files, bit-identical reruns, resume after SIGKILL, and clean failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from benchmark import prefork
from tests.conftest import BACKGROUND, CLI_ENV, served_env, start_process

ROOT = Path(__file__).resolve().parents[1]
FILES = ("metrics.csv", "comm.csv", "flops.csv", "config.resolved.yaml", "env.json")


def write_cfg(tmp_path: Path, **train) -> Path:
    cfg = {
        "seed": 0,
        "threads": 1,
        "data": {"dataset": "digits", "cache_dir": str(tmp_path / "cache"), "max_train_samples": 400,
                 "max_test_samples": 100},
        "partition": {"scheme": "dirichlet", "num_clients": 3, "alpha": 1.0},
        "model": {"backbone": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 4, "embed_dim": 32,
                  "depth": 4, "num_heads": 2, "prompt_len": 2},
        "train": {"method": "sfprompt", "rounds": 2, "batch_size": 32, "lr": 0.05, **train},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m benchmark ARGS`` in a process of its own, whose heavy verb runs in the session's fork server
    (tests/conftest.py: ``served_env``)."""
    proc = subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, env=served_env(**CLI_ENV),
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-2000:])
    return proc


@pytest.mark.parametrize("method", ["sfprompt", "sfl_v2"])
def test_same_seed_gives_bit_identical_results(tmp_path, method):
    cfg = write_cfg(tmp_path, method=method)
    cli("train", "-c", str(cfg), "--out", str(tmp_path / "a"), "-q")
    cli("train", "-c", str(cfg), "--out", str(tmp_path / "b"), "-q")
    for name in FILES:
        assert (tmp_path / "a" / name).is_file(), name
    for name in ("metrics.csv", "comm.csv", "flops.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    cli("train", "-c", str(cfg), "--seed", "1", "--out", str(tmp_path / "c"), "-q")
    a = pd.read_csv(tmp_path / "a" / "metrics.csv")
    c = pd.read_csv(tmp_path / "c" / "metrics.csv")
    assert not a.value.equals(c.value)
    assert not (tmp_path / "a" / "checkpoint.pt").exists()
    # the numerics path is recorded, so `compare` can say why two machines' results differ
    numerics = json.loads((tmp_path / "a" / "env.json").read_text())["numerics"]
    assert numerics["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert numerics["torch_num_threads"] == 1 and numerics["blas"] != "unknown"


def test_resume_after_sigkill_gives_identical_outputs(tmp_path):
    cfg = write_cfg(tmp_path, rounds=12)
    cli("train", "-c", str(cfg), "--out", str(tmp_path / "ref"), "-q")
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "train", "-c", str(cfg), "--out", str(out), "-q"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # let it get into a later round
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "checkpoint.pt").exists(), "the run finished before it could be killed"
    assert not (out / "metrics.csv").exists(), "a killed run must not leave a complete-looking result"
    cli("train", "-c", str(cfg), "--out", str(out), "-q")
    for name in ("metrics.csv", "comm.csv", "flops.csv"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name


def test_nan_loss_fails_with_one_line_and_no_results(tmp_path):
    cfg = write_cfg(tmp_path, method="fedavg", lr=1e30, rounds=3)
    proc = cli("train", "-c", str(cfg), "--out", str(tmp_path / "nan"), "-q", check=False)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "non-finite training loss" in lines[0] and "fedavg" in lines[0]
    assert not (tmp_path / "nan" / "metrics.csv").exists()


PAPER_ACCOUNTING = ("accounting", "--backbone", "vit_base_patch16_224", "--samples-per-client", "500", "--methods",
                    "fedavg", "sfprompt")
"""Two methods: each method's costs at ViT-B/16 are tests/test_extending.py's
``test_traced_costs_equal_the_analytic_hooks_at_vit_b16``, and the other three cost ~10 s of tracing."""


def start_paper_accounting_cli() -> None:
    """Start the paper-scale accounting verb in the background (tests/conftest.py: ``PROCESS_STARTS``): ~20 s alone,
    20-55 s in CI runs beside the workflows, nearly all of it tracing ViT-B/16. A process of its own (``cli``'s
    environment without the server: it starts while the server is still importing)."""
    env = {k: v for k, v in {**os.environ, **CLI_ENV}.items() if k != prefork.SOCKET_ENV}
    start_process("paper_accounting_cli", "the paper-scale accounting verb", lambda _: list(PAPER_ACCOUNTING), env)


@pytest.fixture(scope="session")
def paper_accounting_cli() -> str:
    """The paper-scale accounting verb's standard output once it has exited with status 0."""
    start_paper_accounting_cli()
    return BACKGROUND["paper_accounting_cli"].wait()


def test_accounting_cli_paper_scale_runs_offline(paper_accounting_cli):
    """The verb builds and traces ViT-B/16 with no hub weights."""
    out = paper_accounting_cli
    assert "sfprompt" in out and "fedavg" in out and "1 FLOP = 1 multiply-add" in out
