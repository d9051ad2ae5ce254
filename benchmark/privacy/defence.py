"""The noise defence's operating point (issue #23): per split and method, the smallest σ at which the best
noise-aware attack falls to the mean-image baseline plus a margin, found by a search over σ.

Units: σ in activation units (the smashed data's), PSNR in dB. The search needs only a score ``σ -> best-attack
mean PSNR``, which decreases with σ in expectation (more noise, less signal); it is noisy (a fresh noise draw and,
for the decoder, a fresh training per σ), so the σ found is where one seeded draw crosses the target, bracketed
to a factor :attr:`DefenceSearch.ratio` or finer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class DefenceSearch:
    """Settings of the defence σ search (``privacy.defence``).

    Attributes:
        steps: Score evaluations per (split, method); 0 turns the search off.
        margin_db: The target: best-attack mean PSNR ≤ the mean-image baseline's + this (dB).
        attacks: The attacks whose best defines the score (noise-aware ones: ``lmmse`` weighs σ in its
            estimate, the decoder trains on noised data; ``analytic`` and ``optimisation`` ignore σ).
        start: First σ tried, as a multiple of the smashed patch tokens' rms.
        ratio: Factor between successive σ while no σ meets the target yet (bracketing phase).
        methods: The privacy methods searched (None: every one).
    """

    steps: int = 0
    margin_db: float = 3.0
    attacks: tuple[str, ...] = ("lmmse", "decoder")
    start: float = 0.25
    ratio: float = 4.0
    methods: tuple[str, ...] | None = None


def search_sigma(score: Callable[[float], float], target: float, start: float, ratio: float,
                 steps: int) -> tuple[float, list[tuple[float, float]]]:
    """The smallest σ found with ``score(σ) <= target`` in ``steps`` evaluations, and every (σ, score) tried.

    Multiply σ by ``ratio`` from ``start`` until the target is met, then bisect in log σ between the largest σ
    that missed it and the smallest that met it. Returns NaN for σ if no σ tried meets the target.
    """
    if steps < 1 or start <= 0 or ratio <= 1:
        raise ValueError(f"search_sigma needs steps >= 1, start > 0 and ratio > 1, got {steps}, {start}, {ratio}")
    trace: list[tuple[float, float]] = []
    low, high, sigma = 0.0, math.nan, start
    for _ in range(steps):
        trace.append((sigma, score(sigma)))
        if trace[-1][1] <= target:
            high = sigma
        else:
            low = sigma
        sigma = sigma * ratio if math.isnan(high) else (math.sqrt(low * high) if low > 0 else high / ratio)
    return high, trace
