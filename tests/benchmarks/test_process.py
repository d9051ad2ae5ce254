"""Whole-process figures: cache load, decode, memory with 10 vs 100 clients, paper-scale accounting.

These run real CLI processes or read real cache files, so they are timed with wall time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.benchmarks.conftest import ROOT

DATA_ROOT = os.environ.get("BENCHMARK_DATA_ROOT", "/work/shared/data")


def _cli(args: list[str], **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True,
                          **kw)


@pytest.mark.benchmark(group="data")
def test_cache_load(benchmark, synthetic_cache_dir):
    """A run's data loading: the cached uint8 arrays (CIFAR-10 size) read back, plus the stratified
    subsample a CPU profile takes, touching every selected image."""
    from benchmark.config import DataConfig
    from benchmark.data.cache import load_image_data

    cfg = DataConfig(dataset="cifar10", cache_dir=str(synthetic_cache_dir), max_train_samples=5000,
                     max_test_samples=1000)

    def load():
        train, test = load_image_data(cfg, 32, 0)
        return int(train.images.sum()) + int(test.images.sum())  # touch the pages

    benchmark.pedantic(load, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(train=50_000, test=10_000, max_train_samples=5000, img_size=32)


@pytest.mark.benchmark(group="data")
def test_decode_once(benchmark, tmp_path):
    """The one-off decode of CIFAR-10 from the parquet mirror into the cache (a workflow output)."""
    if not (Path(DATA_ROOT) / "cifar10").is_dir():
        pytest.skip(f"no CIFAR-10 mirror under {DATA_ROOT} (set BENCHMARK_DATA_ROOT)")
    import torch

    from benchmark.data.cache import build_cache

    torch.set_num_threads(1)
    counter = iter(range(100))
    benchmark.pedantic(lambda: build_cache("cifar10", 32, DATA_ROOT, tmp_path / str(next(counter))), rounds=1)
    benchmark.extra_info.update(images=60_000, img_size=32)


RSS_SCRIPT = """
import sys
from benchmark.__main__ import main
from benchmark.perf import peak_rss_bytes
rc = main(sys.argv[1:])
print("PEAK_RSS_KB", peak_rss_bytes() // 1024)
sys.exit(rc)
"""


def _peak_rss_run(tmp: Path, cache_dir: Path, clients: int, method: str) -> int:
    cfg = {
        "seed": 0, "device": "cpu", "threads": 1,
        "data": {"dataset": "cifar10", "cache_dir": str(cache_dir), "max_train_samples": 2000,
                 "max_test_samples": 200},
        "partition": {"scheme": "iid", "num_clients": clients},
        "model": {"backbone": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 4, "embed_dim": 128,
                  "depth": 6, "num_heads": 4, "prompt_len": 10},
        "train": {"method": method, "rounds": 2, "batch_size": 32, "lr": 0.01, "eval_batch_size": 128},
    }
    path = tmp / f"{method}-{clients}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = _cli(["-c", RSS_SCRIPT, "train", "-c", str(path), "--out", str(tmp / f"run-{method}-{clients}"), "-q"])
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("PEAK_RSS_KB")][-1]
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("method", ["fedavg", "sfprompt"])
@pytest.mark.benchmark(group="memory")
def test_memory_10_vs_100_clients(benchmark, tmp_path, synthetic_cache_dir, method):
    """Peak RSS of the same 2,000 samples over 100 clients ÷ over 10 clients (target <= 1.2)."""
    peaks = {}

    def both():
        peaks[10] = _peak_rss_run(tmp_path, synthetic_cache_dir, 10, method)
        peaks[100] = _peak_rss_run(tmp_path, synthetic_cache_dir, 100, method)

    benchmark.pedantic(both, rounds=1)
    ratio = peaks[100] / peaks[10]
    benchmark.extra_info.update(method=method, peak_rss_mb_10=peaks[10] / 1e6, peak_rss_mb_100=peaks[100] / 1e6,
                                ratio=ratio)
    assert ratio <= 1.2, f"peak RSS grows with the clients: {peaks}"  # memory, not time


@pytest.mark.parametrize("backbone", ["vit_base_patch16_224", "vit_large_patch16_224"])
@pytest.mark.benchmark(group="accounting")
def test_accounting_paper_scale(benchmark, tmp_path, backbone):
    """``python -m benchmark accounting`` at 224 px, the whole process (target: under a minute each)."""
    out = tmp_path / f"{backbone}.csv"
    benchmark.pedantic(_cli, args=(["-m", "benchmark", "accounting", "--backbone", backbone,
                                    "--samples-per-client", "500", "--out", str(out)],), rounds=1)
    benchmark.extra_info.update(backbone=backbone, rows=len(out.read_text().splitlines()) - 1)
