"""Measurement helpers for the performance benchmarks (``tests/benchmarks``, ``docs/performance.md``).

Nothing here changes what a run computes: the helpers time code from the outside. Units: compute rates in
multiply-adds per second (fvcore's convention, the unit of :mod:`benchmark.accounting.flops`: 1 FLOP = 1
multiply-add), times in seconds, memory in bytes.

* :func:`matmul_rate`: the machine's float32 ``torch.matmul`` rate on large square matrices, the roof the
  training steps are compared against.
* :class:`PhaseClock`: splits a federated round's wall time into *compute* (forward of the model's
  segments and the loss, backward, optimiser step) and *harness* (everything else: batching and
  normalisation, client sampling, ledgers, FLOP bookkeeping, aggregation, evaluation bookkeeping).
* :func:`synthetic_data`: a :class:`~benchmark.data.federated.FederatedData` of random uint8 images
  (timings do not depend on pixel values), so measurements need no dataset.
* :func:`profile_rounds`: the two above on ``rounds`` rounds of a method; achieved rate = the run's own
  FLOP ledger ÷ time.

``python -m benchmark.perf`` prints per-round figures of every method for one model (see ``--help``);
``python -m benchmark.perf summary results/bench/benchmarks.json`` turns the benchmarks' JSON into the
Markdown table of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.config import from_dict, parse_overrides
from benchmark.data.federated import FederatedData
from benchmark.methods import create_method, federated_methods
from benchmark.overrides import parse_method_override
from benchmark.run import configure_torch

MAC_UNIT = "multiply-adds per second (fvcore convention, 1 FLOP = 1 multiply-add)"

Timer = Callable[[], float]


def cpu_timer(threads: int) -> Timer:
    """The clock for a measurement: process CPU time for a single-threaded process, wall time otherwise.

    On a shared machine (other jobs running), a one-thread process's CPU time is the wall time it would take
    on a core of its own, whereas its wall time also counts the time other processes held the core. With
    several threads, CPU time sums over threads, so wall time is the only meaningful clock.
    """
    return time.process_time if threads == 1 else time.perf_counter


# ----------------------------------------------------------------------------------------------------------
# the roof


def matmul_rate(n: int = 2048, repeats: int = 5, threads: int | None = None, timer: Timer = time.perf_counter) -> float:
    """Median float32 ``torch.matmul`` rate on ``n × n`` matrices, in multiply-adds per second.

    One ``n × n`` by ``n × n`` product is ``n**3`` multiply-adds. ``threads`` sets ``torch.set_num_threads``
    for the measurement and restores it afterwards (None: the current setting).
    """
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        a = torch.randn(n, n, generator=g)
        b = torch.randn(n, n, generator=g)
        out = torch.empty(n, n)
        torch.matmul(a, b, out=out)  # warm-up
        times = []
        for _ in range(repeats):
            t0 = timer()
            torch.matmul(a, b, out=out)
            times.append(timer() - t0)
        return n ** 3 / statistics.median(times)
    finally:
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------------------------
# compute vs harness


class PhaseClock:
    """Times the compute of a :class:`~benchmark.federation.method.Method` from the outside.

    *Compute* is the time inside (outermost) forward calls of the model and its segments (``model``,
    ``head``, ``body``, ``tail``, ``client_path``, ``server_path``) and the cross-entropy loss, inside
    ``Tensor.backward``, and inside the method's optimiser step (``Method.step``: clipping, ``opt.step``,
    ``zero_grad``). Nested calls are counted once. Everything else in a round is *harness*.

    Use as a context manager around the code to measure; :attr:`compute` accumulates seconds.
    """

    def __init__(self, method: Any, timer: Timer = time.perf_counter) -> None:
        self.method, self.timer = method, timer
        self.compute = 0.0
        self.calls = 0
        self.sections: dict[str, float] = {"local_update": 0.0, "evaluate": 0.0}
        """Wall seconds inside ``Method.local_update`` (training) and ``Method.evaluate``."""
        self._depth = 0
        self._t0 = 0.0
        self._stack = contextlib.ExitStack()

    def _enter(self, *_: Any) -> None:
        if self._depth == 0:
            self._t0 = self.timer()
        self._depth += 1

    def _exit(self, *_: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.compute += self.timer() - self._t0
            self.calls += 1

    def _timed(self, fn):
        def wrapper(*args: Any, **kwargs: Any):
            self._enter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._exit()

        return wrapper

    def _section(self, name: str, fn):
        def wrapper(*args: Any, **kwargs: Any):
            t0 = self.timer()
            try:
                return fn(*args, **kwargs)
            finally:
                self.sections[name] += self.timer() - t0

        return wrapper

    def __enter__(self) -> "PhaseClock":
        m = self.method.model
        modules = [m, m.head, m.body, m.tail, m.client_path, m.server_path]
        for mod in modules:
            h1 = mod.register_forward_pre_hook(self._enter)
            h2 = mod.register_forward_hook(self._exit)
            self._stack.callback(h1.remove)
            self._stack.callback(h2.remove)
        saved_backward, saved_ce = torch.Tensor.backward, F.cross_entropy
        torch.Tensor.backward = self._timed(saved_backward)
        F.cross_entropy = self._timed(saved_ce)
        self._stack.callback(setattr, torch.Tensor, "backward", saved_backward)
        self._stack.callback(setattr, F, "cross_entropy", saved_ce)
        self.method.step = self._timed(type(self.method).step.__get__(self.method))
        self._stack.callback(self.method.__dict__.pop, "step", None)
        for name in self.sections:
            setattr(self.method, name, self._section(name, getattr(type(self.method), name).__get__(self.method)))
            self._stack.callback(self.method.__dict__.pop, name, None)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()


# ----------------------------------------------------------------------------------------------------------
# data and configs for measurements


def synthetic_data(num_clients: int, samples_per_client: int, img_size: int = 32, num_classes: int = 10,
                   test_samples: int = 1000, seed: int = 0):
    """Random uint8 images and balanced labels, ``samples_per_client`` per client (contiguous IID split)."""

    g = torch.Generator().manual_seed(seed)
    n = num_clients * samples_per_client
    train = torch.randint(0, 256, (n, 3, img_size, img_size), dtype=torch.uint8, generator=g)
    test = torch.randint(0, 256, (test_samples, 3, img_size, img_size), dtype=torch.uint8, generator=g)
    labels = torch.randperm(n, generator=g) % num_classes
    parts = [np.arange(c * samples_per_client, (c + 1) * samples_per_client, dtype=np.int64)
             for c in range(num_clients)]
    return FederatedData(train, labels, test, torch.arange(test_samples) % num_classes, parts,
                         [str(i) for i in range(num_classes)], (0.5,) * 3, (0.5,) * 3, img_size)


SMALL_VITS: dict[str, dict[str, int]] = {
    "d128x6": dict(img_size=32, patch_size=4, embed_dim=128, depth=6, num_heads=4),
    "d192x6": dict(img_size=32, patch_size=4, embed_dim=192, depth=6, num_heads=3),
    "d192x12": dict(img_size=32, patch_size=4, embed_dim=192, depth=12, num_heads=3),
}
"""Candidate CPU backbones (timm ``vit_tiny_patch16_224`` with these constructor overrides)."""


def run_config(method: str, model: str = "d128x6", clients: int = 10, **train: Any):
    """A :class:`~benchmark.config.RunConfig` for measurements: the named small ViT, ``threads: 1``."""
    return from_dict({
        "seed": 0, "device": "cpu", "threads": 1,
        "partition": {"num_clients": clients},
        "model": {"backbone": "vit_tiny_patch16_224", **SMALL_VITS[model]},
        "train": {"method": method, **train},
    })


# ----------------------------------------------------------------------------------------------------------
# one method, a few rounds


@dataclasses.dataclass
class RoundProfile:
    """Per-round figures of one method, from the median round. Seconds on the profile's clock (process CPU
    time with one thread, wall time otherwise: :func:`cpu_timer`)."""

    method: str
    round_s: float
    """One round: training of every sampled client, aggregation, evaluation if due."""
    compute_s: float
    """Of which forward + loss + backward + optimiser step."""
    train_flops: float
    """Training FLOPs of one round, both parties, from the run's compute ledger (fvcore convention)."""
    setup_s: float
    """Building the method once: model, per-sample FLOP counting (fvcore traces)."""
    train_s: float = 0.0
    """Of the round, time inside the clients' local work (``local_update``)."""
    eval_s: float = 0.0
    """Of the round, time inside evaluation (test split)."""

    @property
    def harness_fraction(self) -> float:
        return max(0.0, 1.0 - self.compute_s / self.round_s)

    @property
    def achieved_rate(self) -> float:
        """Training FLOPs (ledger) ÷ time in the clients' local work, in multiply-adds per second."""
        return self.train_flops / self.train_s


def profile_rounds(cfg: Any, data: Any, rounds: int = 3, warmup: int = 1,
                   timer: Timer | None = None) -> RoundProfile:
    """Run ``warmup + rounds`` rounds of ``cfg.train.method`` on ``data``; medians over the last ``rounds``."""

    configure_torch(cfg, torch.device("cpu"))  # threads and allocator settings, as a run applies them
    # More rounds than are run, so no measured round is the final one (which also scores every client on
    # its own training data; see Method.evaluate): that one-off cost is measured by the caller if needed.
    cfg = cfg.replace(**{"train.rounds": warmup + rounds + 1})
    timer = timer or cpu_timer(torch.get_num_threads())
    t0 = timer()
    method = create_method(cfg, data, "cpu")
    setup = timer() - t0
    walls, computes, flops, trains, evals = [], [], [], [], []
    for rnd in range(warmup + rounds):
        with PhaseClock(method, timer) as clock:
            t0 = timer()
            method.run_round(rnd)
            wall = timer() - t0
        if rnd >= warmup:
            walls.append(wall)
            computes.append(clock.compute)
            trains.append(clock.sections["local_update"])
            evals.append(clock.sections["evaluate"])
            frame = method.compute.frame()
            flops.append(float(frame.loc[frame["round"] == rnd, "total"].sum()))
    i = int(np.argsort(walls)[len(walls) // 2])  # the median round, so the three figures belong together
    return RoundProfile(cfg.train.method, walls[i], computes[i], flops[i], setup, trains[i], evals[i])


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes.

    Linux's ``VmHWM`` (``/proc/self/status``) where available: ``getrusage``'s ``ru_maxrss`` survives
    ``fork`` + ``exec``, so a child started by a large process would report its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


# ----------------------------------------------------------------------------------------------------------
# command line: python -m benchmark.perf


SUMMARY_FORMATS = {
    "roof": "{gmac_per_s:.1f} G multiply-adds/s",
    "training-step": "{img_per_s:.0f} img/s, {gmac_per_s:.1f} G multiply-adds/s = {pct_of_matmul:.0f}% of matmul",
    "round": ("{median:.2f} s/round (train {train_s_per_round:.2f}, eval {eval_s_per_round:.2f}); "
              "harness {harness_pct:.1f}%"),
    "pretrain": "{img_per_s:.0f} img/s",
    "memory": "peak RSS {peak_rss_mb_10:.0f} MB (10 clients) vs {peak_rss_mb_100:.0f} MB (100): x{ratio:.3f}",
    "allocator": "eval {eval_ms_per_image:.2f} ms/img, train {train_cpu_s:.2f} s, peak RSS {peak_rss_mb:.0f} MB",
}
"""How :func:`summarize` shows each benchmark group: a format over the benchmark's ``extra_info`` and its
median time (``median``); other groups show the median seconds."""


def summarize(path: str | Path) -> str:
    """A Markdown table of the figures in a pytest-benchmark JSON written by ``tests/benchmarks``."""
    data = json.loads(Path(path).read_text())
    rows = []
    for b in data["benchmarks"]:
        name, info, med = b["name"].removeprefix("test_"), b.get("extra_info", {}), b["stats"]["median"]
        group = b.get("group") or ""
        fig = SUMMARY_FORMATS.get(group, "{median:.2f} s").format(median=med, **info)
        rows.append(f"| {group} | {name} | {fig} | {b['stats']['rounds']} |")
    head = ["| group | benchmark | median figure | rounds |", "|---|---|---|---|"]
    return "\n".join(head + rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["summary"]:
        print(summarize(argv[1] if len(argv) > 1 else "results/bench/benchmarks.json"))
        return 0
    p = argparse.ArgumentParser(prog="python -m benchmark.perf", description="per-round time, efficiency and "
                                "harness overhead of every method on a small ViT (synthetic data, CPU)")
    p.add_argument("--model", default="d128x6", choices=sorted(SMALL_VITS))
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--samples", type=int, default=128, help="samples per client")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--test-samples", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", nargs="*", default=None,
                   help="method names (default: the paper's federated methods), each optionally with overrides: "
                        "sfprompt:method_params.keep_ratio=1.0,... or sfprompt.keep_ratio=1.0")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra train.* overrides")
    p.add_argument("--json", help="also write the rows as JSON here")
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    roof = matmul_rate(threads=a.threads, timer=cpu_timer(a.threads))
    data = synthetic_data(a.clients, a.samples, test_samples=a.test_samples)
    rows = []
    if a.methods is None:
        a.methods = federated_methods()
    for spec in a.methods:
        # "sfprompt:method_params.keep_ratio=1.0,model.prompt_len=0": a method with its own overrides (ablations)
        name, extra = parse_method_override(spec)
        over = {"train.batch_size": a.batch_size, **parse_overrides(a.set), **extra}
        cfg = run_config(name, a.model, a.clients).replace(**{"threads": a.threads, **over})
        prof = profile_rounds(cfg, data, rounds=a.rounds)
        rows.append({
            "method": spec, "round_s": prof.round_s, "train_s": prof.train_s, "eval_s": prof.eval_s,
            "compute_s": prof.compute_s, "harness_pct": 100 * prof.harness_fraction,
            "train_ms_per_sample": 1e3 * prof.train_s / (a.clients * a.samples),
            "eval_ms_per_sample": 1e3 * prof.eval_s / a.test_samples,
            "train_gmac": prof.train_flops / 1e9, "achieved_gmac_s": prof.achieved_rate / 1e9,
            "pct_of_matmul": 100 * prof.achieved_rate / roof, "setup_s": prof.setup_s,
        })
    print(f"model {a.model}, {a.clients} clients x {a.samples} samples, batch {a.batch_size}, "
          f"{a.threads} thread(s); matmul roof {roof / 1e9:.1f} G multiply-adds/s")
    cols = list(rows[0])
    width = max(len(r["method"]) for r in rows)
    print(f"{'method':<{width}} " + " ".join(f"{c:>9.9}" for c in cols[1:]))
    for r in rows:
        print(f"{r['method']:<{width}} " + " ".join(f"{r[c]:>9.4g}" for c in cols[1:]))
    if a.json:
        Path(a.json).write_text(json.dumps({"matmul_rate": roof, "rows": rows, "args": vars(a)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
