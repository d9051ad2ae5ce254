"""Calibration of the system model against this machine: does ``FLOPs / rate`` predict measured compute time?

The ``local`` profile's rate is what this machine reaches in **the training step**: a plain forward, loss,
backward and optimiser step of the run's whole ViT at the run's batch size (every parameter trainable), its
FLOPs from the suite's counter (fvcore convention) divided by its process CPU time with one torch thread.
The model then predicts each method's training compute time as ``(client + server FLOPs in the ledger) /
rate`` (the simulation runs both parties in one process, so the phases add up) and we compare it with the
measured compute time of real training rounds (:class:`benchmark.perf.PhaseClock`: forward, loss, backward,
optimiser step, evaluation excluded), in the same process and on the same clock.

Why process CPU time: on a shared machine, a one-thread process's CPU time is the time the work takes on a
core of its own, so other processes' load does not enter the comparison (wall time would). Reference steps
are measured before every method, interleaved, and the profile takes their median.

The comparison can fail: FLOPs count multiply-adds only (fvcore), while a step also does elementwise work
(GELU, softmax, layer norms, the optimiser), whose share differs between methods (frozen parts skip weight
gradients; EL2N scoring is forward-only) and grows as the model shrinks. Nothing here is fitted per method.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterable

import pandas as pd
import torch
import torch.nn.functional as F

from benchmark.accounting.flops import training_flops
from benchmark.federation.method import build_split_model, image_input
from benchmark.overrides import parse_method_override
from benchmark.perf import profile_rounds
from benchmark.run import configure_torch

TOLERANCE = 0.25
"""The calibration's pass mark: |predicted / measured - 1| <= 25% (the issue's tolerance)."""


@dataclass
class Calibration:
    """One method's comparison. Seconds of process CPU time (one thread)."""

    method: str
    flops: float
    """Training FLOPs of the measured round, both parties (ledger, fvcore convention)."""
    measured_s: float
    predicted_s: float

    @property
    def error(self) -> float:
        """predicted / measured - 1."""
        return self.predicted_s / self.measured_s - 1.0


class ReferenceStep:
    """The plain training step of ``cfg``'s ViT at ``cfg.train.batch_size``: forward, loss, backward and an
    SGD step with every parameter trainable (FedAvg's step without the federation around it). Its FLOPs per
    sample come from :func:`benchmark.accounting.flops.training_flops` (counted once)."""

    def __init__(self, cfg: Any, num_classes: int = 10) -> None:
        self.model = build_split_model(cfg, num_classes, 0)
        self.flops_per_step = training_flops(self.model, image_input(self.model)).total * cfg.train.batch_size
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(cfg.train.batch_size, 3, *self.model.head.patch_embed.img_size, generator=g)
        self.y = torch.randint(0, num_classes, (cfg.train.batch_size,), generator=g)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)

    def step(self) -> None:
        self.model.train()
        loss = F.cross_entropy(self.model(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def rate(self, steps: int = 4, timer=time.process_time) -> float:
        """Multiply-adds per second over ``steps`` timed steps after one warm-up step."""
        self.step()
        t0 = timer()
        for _ in range(steps):
            self.step()
        return self.flops_per_step * steps / (timer() - t0)


def calibrate(cfg: Any, data: Any, methods: Iterable[str], rounds: int = 1,
              reference_steps: int = 4) -> tuple[float, list[Calibration]]:
    """Measure the ``local`` rate and each method's training compute; return (rate, comparisons).

    Args:
        cfg: A :class:`~benchmark.config.RunConfig` (its model, batch size and method settings; ``threads``
            should be 1 for the process clock to be meaningful).
        data: A :class:`~benchmark.data.federated.FederatedData` (e.g. :func:`benchmark.perf.synthetic_data`).
        methods: Method names, each optionally with overrides (:func:`benchmark.overrides.parse_method_override`).
        rounds: Timed rounds per method (after one warm-up round); the median round is compared.
        reference_steps: Timed steps of each reference measurement.
    """

    configure_torch(cfg, torch.device("cpu"))
    reference = ReferenceStep(cfg, data.num_classes)
    rates, out = [], []
    for spec in methods:
        name, extra = parse_method_override(spec)
        over = {"train.method": name, "train.eval_every": 10_000, **extra}
        mcfg = cfg.replace(**over)
        rates.append(reference.rate(reference_steps))
        prof = profile_rounds(mcfg, data, rounds=rounds, warmup=1, timer=time.process_time)
        out.append(Calibration(spec, prof.train_flops, prof.compute_s, float("nan")))
    rate = statistics.median(rates)
    for c in out:
        c.predicted_s = c.flops / rate
    return rate, out


def calibration_frame(rate: float, rows: list[Calibration]) -> pd.DataFrame:
    """The comparison as a table: method, GFLOPs, measured and predicted seconds, error (%), within tolerance."""
    return pd.DataFrame([{
        "method": c.method, "gflops": c.flops / 1e9, "measured_s": c.measured_s, "predicted_s": c.predicted_s,
        "error_pct": 100 * c.error, "within_25pct": abs(c.error) <= TOLERANCE, "local_gmacs": rate / 1e9,
    } for c in rows])
