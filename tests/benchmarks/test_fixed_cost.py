"""A run's fixed cost (issue 26): what every workflow job pays before and after its real work.

The smoke and tiny workflows in the test suite are dominated by it: a tiny-ViT job trains for well under a second
and spends the rest starting Python, importing torch, timm and the package, building its model and evaluating.
So a regression in any of these shows in the suite's time; these figures say which one.

* process: ``python -c pass`` and ``python -c "import benchmark.run, benchmark.methods"`` (what a ``train`` job
  imports), whole processes, wall time; their children's CPU time and the imports' share go in ``extra_info``;
* model: the backbone and its split model built for the smoke profile's tiny ViT and the default profile's
  d128 × 6 (process CPU time, one thread);
* evaluation: one evaluation of N test images (the smoke profile's 200, process CPU time), images/s in
  ``extra_info``.

Nothing here asserts a time (or a ratio): the figures are records to compare between commits.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import pytest
import torch

from benchmark.perf import SMALL_VITS
from tests.benchmarks.conftest import ROOT

SMOKE_VIT = dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)
"""config/smoke.yaml's backbone (``vit_tiny_patch16_224`` with these overrides)."""
MODELS = {"smoke": SMOKE_VIT, "d128x6": SMALL_VITS["d128x6"]}
PROGRAMS = {"python": "pass", "imports": "import benchmark.run, benchmark.methods"}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("program", list(PROGRAMS))
@pytest.mark.benchmark(group="fixed-cost-process")
def test_process_start(benchmark, program):
    """One Python process: bare, or importing what a training job imports (wall time; CPU in extra_info)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cpu = []

    def start():
        before = _children_cpu()
        subprocess.run([sys.executable, "-c", PROGRAMS[program]], cwd=ROOT, env=env, check=True)
        cpu.append(_children_cpu() - before)

    benchmark.pedantic(start, rounds=3, warmup_rounds=1)
    benchmark.extra_info["cpu_s_median"] = sorted(cpu)[len(cpu) // 2]


def _split_model(arch: dict, method: str = "sfprompt"):
    from benchmark.config import from_dict
    from benchmark.methods import method_class
    from benchmark.models.split import SplitViT
    from benchmark.models.vit import create_backbone

    cfg = from_dict({"model": {"backbone": "vit_tiny_patch16_224", "weights": "scratch", "head_blocks": 1,
                               "tail_blocks": 1, "prompt_len": 4, **arch}})
    cls = method_class(method)
    vit = create_backbone(cfg.model, 10)
    m = cfg.model
    return cls.set_trainability(SplitViT(vit, m.head_blocks, m.tail_blocks, m.prompt_len, m.prompt_depth))


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.benchmark(group="fixed-cost-model", timer=time.process_time)
def test_model_build(benchmark, model):
    """The timm backbone (random init) and its SFPrompt split model, as a training job builds them."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    built = benchmark.pedantic(_split_model, args=(MODELS[model],), rounds=5, warmup_rounds=1)
    benchmark.extra_info["parameters"] = sum(p.numel() for p in built.parameters())


@pytest.mark.parametrize("images", [200])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.benchmark(group="fixed-cost-evaluation", timer=time.process_time)
def test_evaluation(benchmark, model, images):
    """One evaluation of ``images`` test images (batch 200, the smoke profile's eval batch) by the split model."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vit = _split_model(MODELS[model]).eval()
    size = MODELS[model]["img_size"]
    x = torch.randn(images, 3, size, size)

    @torch.no_grad()
    def evaluate():
        return sum(int(vit(batch).argmax(-1).sum()) for batch in x.split(200))

    benchmark.pedantic(evaluate, rounds=5, warmup_rounds=1)
    benchmark.extra_info["images_per_s"] = images / benchmark.stats.stats.median
