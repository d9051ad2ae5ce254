"""Per-round wall time of every method and ablation, and the harness overhead of a round.

Harness = the part of a round that is not forward (model segments and loss), backward or optimiser step:
batching and normalisation, client sampling, ledgers, FLOP bookkeeping, aggregation, evaluation
bookkeeping (measured by :class:`benchmark.perf.PhaseClock`). Target (issue 5): at most 5% of the round.
The grid size is the default profile's candidate (``SFP_BENCH_CLIENTS`` × ``SFP_BENCH_SAMPLES``, test split
of ``SFP_BENCH_TEST`` images evaluated every round).
"""

from __future__ import annotations

import os
import time

import pytest

from benchmark.methods import create_method
from benchmark.perf import SMALL_VITS, PhaseClock, run_config, synthetic_data

MODEL = os.environ.get("SFP_BENCH_MODEL", "d128x6")
CLIENTS = int(os.environ.get("SFP_BENCH_CLIENTS", "10"))
SAMPLES = int(os.environ.get("SFP_BENCH_SAMPLES", "50"))
TEST = int(os.environ.get("SFP_BENCH_TEST", "500"))

VARIANTS = {
    "fedavg": ("fedavg", {}),
    "fedprompt": ("fedprompt", {}),
    "sfl_v1": ("sfl_v1", {}),
    "sfl_v2": ("sfl_v2", {}),
    "sfprompt": ("sfprompt", {}),
    "sfprompt/no_pruning": ("sfprompt", {"method_params.keep_ratio": 1.0}),
    "sfprompt/no_local_loss": ("sfprompt", {"method_params.local_loss_epochs": 0}),
    "sfprompt/no_prompts": ("sfprompt", {"model.prompt_len": 0}),
    "sfprompt/no_server_grad": ("sfprompt", {"method_params.prompt_grad_via_server": False}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.benchmark(group="round", timer=time.process_time)
def test_round(benchmark, variant):
    method, over = VARIANTS[variant]
    data = synthetic_data(CLIENTS, SAMPLES, test_samples=TEST)
    cfg = run_config(method, MODEL, CLIENTS, rounds=1000, eval_batch_size=128).replace(**over)
    m = create_method(cfg, data, "cpu")
    rounds = iter(range(1000))
    m.run_round(next(rounds))  # warm-up
    with PhaseClock(m, time.process_time) as clock:
        benchmark.pedantic(lambda: m.run_round(next(rounds)), rounds=3)
    wall = sum(benchmark.stats.stats.data)
    benchmark.extra_info.update(
        model=MODEL, arch=SMALL_VITS[MODEL], clients=CLIENTS, samples_per_client=SAMPLES, test_samples=TEST,
        round_s=benchmark.stats.stats.median,
        train_s_per_round=clock.sections["local_update"] / 3, eval_s_per_round=clock.sections["evaluate"] / 3,
        harness_pct=100 * max(0.0, 1 - clock.compute / wall),
    )
