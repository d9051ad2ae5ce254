"""The ``keep_freed_memory`` knob: the same work with glibc's default allocator thresholds and with freed
memory kept for reuse, each in a fresh process (the setting is process-wide and cannot be undone).

Reports CPU seconds (user + system) and minor page faults of one client's SFPrompt round (128 samples,
batch 32) and of an evaluation of 1,000 test images at batch 500 (``config/default.yaml``'s
``eval_batch_size``), small ViT, one thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.benchmarks.conftest import ROOT

SCRIPT = """
import json, resource, sys, time
import torch
from benchmark.methods import create_method
from benchmark.perf import run_config, synthetic_data
from benchmark.run import keep_freed_memory
torch.set_num_threads(1)
if sys.argv[1] == "on":
    keep_freed_memory()
data = synthetic_data(1, 128, test_samples=1000)
m = create_method(run_config("sfprompt", "d128x6", 1, eval_batch_size=500), data, "cpu")
m.local_update(0, 0)
out = {}
for name, fn in (("train", lambda: m.local_update(0, 0)), ("eval", lambda: m.accuracy(None, "test"))):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(2):
        fn()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    out[name] = {"user_s": (r1.ru_utime - r0.ru_utime) / 2, "sys_s": (r1.ru_stime - r0.ru_stime) / 2,
                 "minor_faults": (r1.ru_minflt - r0.ru_minflt) // 2}
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT", json.dumps(out))
"""


def _measure(mode: str) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], cwd=ROOT, env=env, capture_output=True, text=True,
                          check=True)
    return json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][len("RESULT "):])


@pytest.mark.parametrize("mode", ["off", "on"])
@pytest.mark.benchmark(group="allocator")
def test_keep_freed_memory(benchmark, mode):
    runs = []
    benchmark.pedantic(lambda: runs.append(_measure(mode)), rounds=3)
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    info = {"keep_freed_memory": mode == "on", "peak_rss_mb": med([r["peak_rss_mb"] for r in runs])}
    for part in ("train", "eval"):
        for key in ("user_s", "sys_s", "minor_faults"):
            info[f"{part}_{key}"] = med([r[part][key] for r in runs])
        info[f"{part}_cpu_s"] = med([r[part]["user_s"] + r[part]["sys_s"] for r in runs])
    info["eval_ms_per_image"] = 1e3 * info["eval_cpu_s"] / 1000
    benchmark.extra_info.update(info)
