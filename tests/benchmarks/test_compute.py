"""Compute efficiency: the float32 matmul roof and each method's achieved training rate against it.

Achieved rate = FLOPs the run's own compute ledger charges for one client's local work (fvcore
convention, 1 FLOP = 1 multiply-add) ÷ CPU time of that local work. Target (issue 5): full fine-tuning
(FedAvg) at batch >= 32 reaches at least 50% of the matmul rate. Reported in ``extra_info``, not asserted.
"""

from __future__ import annotations

import os
import time

import pytest

from benchmark.methods import create_method
from benchmark.methods import federated_methods
from benchmark.perf import SMALL_VITS, matmul_rate, run_config, synthetic_data

METHODS = federated_methods()

MODEL = os.environ.get("SFP_BENCH_MODEL", "d128x6")
"""Backbone of the compute benchmarks (a key of :data:`benchmark.perf.SMALL_VITS`)."""
SAMPLES = 128


def _roof() -> float:
    return matmul_rate(threads=1, timer=time.process_time)


@pytest.mark.benchmark(group="roof", timer=time.process_time)
def test_matmul_rate(benchmark):
    import torch

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    benchmark.pedantic(torch.matmul, args=(a, b), kwargs={"out": out}, rounds=7, warmup_rounds=1)
    rate = n ** 3 / benchmark.stats.stats.median
    benchmark.extra_info.update(n=n, threads=1, gmac_per_s=rate / 1e9)


@pytest.mark.parametrize("batch_size", [32, 64])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.benchmark(group="training-step", timer=time.process_time)
def test_training_step_efficiency(benchmark, method, batch_size):
    """One client's local work (``SAMPLES`` samples) of each method; ratio of its rate to the matmul rate."""
    if batch_size != 32 and method != "fedavg":
        pytest.skip("batch 64 only for full fine-tuning")
    data = synthetic_data(1, SAMPLES, test_samples=16)
    m = create_method(run_config(method, MODEL, 1, batch_size=batch_size), data, "cpu")
    m.model.train()
    m.local_update(0, 0)  # warm-up, and the per-call FLOPs from the ledger
    flops = float(m.compute.frame()["total"].sum())
    roofs: list[float] = []  # the matmul rate, measured before every round (interleaved: same conditions)
    benchmark.pedantic(m.local_update, args=(0, 0), setup=lambda: roofs.append(_roof()), rounds=5)
    roof = sorted(roofs)[len(roofs) // 2]
    rate = flops / benchmark.stats.stats.median
    benchmark.extra_info.update(
        model=MODEL, arch=SMALL_VITS[MODEL], batch_size=batch_size, samples=SAMPLES, flops_per_call=flops,
        gmac_per_s=rate / 1e9, matmul_gmac_per_s=roof / 1e9, pct_of_matmul=100 * rate / roof,
        img_per_s=SAMPLES / benchmark.stats.stats.median,
    )


@pytest.mark.parametrize("model", ["d128x6", "d192x6"])
@pytest.mark.benchmark(group="pretrain", timer=time.process_time)
def test_pretrain_throughput(benchmark, tmp_path, synthetic_cache_dir, model):
    """Supervised pre-training (``python -m benchmark pretrain``) on CIFAR-100-sized data, batch 128."""
    from benchmark.config import from_dict
    from benchmark.pretrain import pretrain

    n = 1024
    cfg = from_dict({
        "seed": 0, "device": "cpu", "threads": 1, "data": {"cache_dir": str(synthetic_cache_dir)},
        "model": {"backbone": "vit_tiny_patch16_224", **SMALL_VITS[model]},
        "pretrain": {"dataset": "cifar100", "epochs": 1, "batch_size": 128, "max_train_samples": n,
                     "max_test_samples": 1},
    })
    rounds = iter(range(3))

    def fresh_cache():  # every round trains: an empty backbone cache each time (a hit would time a copy)
        return (cfg, tmp_path / "w.safetensors"), {"progress": False, "cache_dir": tmp_path / f"cache{next(rounds)}"}

    benchmark.pedantic(pretrain, setup=fresh_cache, rounds=3)
    benchmark.extra_info.update(model=model, samples=n, batch_size=128,
                                img_per_s=n / benchmark.stats.stats.median)


@pytest.mark.benchmark(group="calibration", timer=time.process_time)
def test_calibration_local_profile(benchmark):
    """The system model's ``local`` profile against measured compute (docs/performance.md, "Calibration"): the
    default profile's ViT width at 3 blocks, 2 clients x 48 samples, every method; each method's error
    (predicted / measured CPU time - 1) and whether it is within the 25% pass mark go to ``extra_info``. Recorded,
    not asserted: a timing (it missed once in CI beside other jobs: SFL-V2 +35.6%)."""
    from benchmark.system.calibrate import TOLERANCE, calibrate

    cfg = run_config("fedavg", "d128x6", clients=2).replace(**{"model.depth": 3, "model.prompt_len": 10})
    data = synthetic_data(2, 48, test_samples=8)
    rate, rows = benchmark.pedantic(calibrate, args=(cfg, data, METHODS), kwargs={"reference_steps": 3},
                                    rounds=1, iterations=1)
    errors = {c.method: round(c.error, 3) for c in rows}
    benchmark.extra_info.update(local_gmacs=rate / 1e9, errors=errors,
                                within_tolerance=all(abs(e) <= TOLERANCE for e in errors.values()))
