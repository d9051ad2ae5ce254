"""Performance benchmarks (issue 5): not part of the default test command.

The default ``pytest`` run has ``--benchmark-skip`` in its addopts, so every test here (each one uses the
``benchmark`` fixture) is skipped. Run them with::

    pytest tests/benchmarks --benchmark-only --benchmark-json=results/bench/benchmarks.json

(``--benchmark-only`` overrides the default ``--benchmark-skip``; without ``--benchmark-json`` the JSON goes
to ``results/bench/benchmarks.json`` anyway.) Every test also stores its derived figures (rates, ratios,
fractions) in the JSON's ``extra_info``; ``docs/performance.md`` explains them.

Clocks: compute benchmarks run with one torch thread (as workflow jobs do) and are timed with process CPU
time (``time.process_time``), which on a shared machine is the time the work would take on a core of its
own; I/O and whole-process benchmarks use wall time. Nothing here asserts a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "results" / "bench"


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("benchmark_only", False) and config.getoption("benchmark_json", None) is None:
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        config.option.benchmark_json = BENCH_DIR / "benchmarks.json"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Belt and braces: nothing in this folder runs unless benchmarks are enabled."""
    if config.getoption("benchmark_only", False) or not config.getoption("benchmark_skip", False):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="performance benchmark: run with pytest tests/benchmarks --benchmark-only")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def run_allocator_settings():
    """Runs apply ``keep_freed_memory`` (default true) in ``configure_torch``; so do the benchmarks
    (process-wide and irreversible: the off case is measured in a subprocess, ``test_allocator.py``)."""
    from benchmark.run import keep_freed_memory

    keep_freed_memory()


@pytest.fixture(autouse=True)
def one_thread():
    """Workflow jobs run with ``threads: 1`` (two at once on 2 cores); so do the compute benchmarks."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def write_synthetic_cache(cache_dir: Path, dataset: str, n_train: int, n_test: int, num_classes: int,
                          img_size: int = 32) -> Path:
    """A cache file in :mod:`benchmark.data.cache`'s format holding random images (timings do not depend on
    pixel values), so the data benchmarks need no dataset mirror."""
    from safetensors.torch import save_file

    from benchmark.data.cache import CACHE_FORMAT, cache_path
    from benchmark.data.datasets import get_spec

    g = torch.Generator().manual_seed(0)
    tensors = {
        "train_images": torch.randint(0, 256, (n_train, 3, img_size, img_size), dtype=torch.uint8, generator=g),
        "train_labels": torch.arange(n_train, dtype=torch.int64) % num_classes,
        "test_images": torch.randint(0, 256, (n_test, 3, img_size, img_size), dtype=torch.uint8, generator=g),
        "test_labels": torch.arange(n_test, dtype=torch.int64) % num_classes,
    }
    meta = {"format": CACHE_FORMAT, "dataset": dataset, "img_size": str(img_size),
            "classes": json.dumps([str(i) for i in range(num_classes)]), "origin": "synthetic (benchmark)",
            "num_train": str(n_train), "num_test": str(n_test),
            "spec": get_spec(dataset).fingerprint()}  # the preset's declaration: the cache is current for it
    path = cache_path(cache_dir, dataset, img_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return path


@pytest.fixture(scope="session")
def synthetic_cache_dir(tmp_path_factory) -> Path:
    """CIFAR-sized synthetic caches: ``cifar10`` (50,000 + 10,000 images, 10 classes) and ``cifar100``."""
    d = tmp_path_factory.mktemp("cache")
    write_synthetic_cache(d, "cifar10", 50_000, 10_000, 10)
    write_synthetic_cache(d, "cifar100", 50_000, 10_000, 100)
    return d
