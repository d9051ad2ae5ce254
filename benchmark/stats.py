"""Uncertainty of every accuracy the report shows: one module, so no table or figure computes its own.

A *seed* varies everything random in a run (``benchmark.seeding`` splits it into named streams): the client
partition, the initialisation of the trainable parts (prompts, classifier), the batch order of every client
and phase, and the clients sampled each round. Over seeds we report the mean and a two-sided 95% confidence
interval of the mean with Student's t (``scipy.stats.t``, n - 1 degrees of freedom), and always n. A
difference between two methods is *paired* by seed (same partition and sampling), which removes the variance
the two share: its CI is the t-interval of the per-seed differences.

A test split subsampled to N images adds a binomial standard error sqrt(p(1 - p) / N) to every single-run
accuracy; :func:`binomial_se` gives it for the captions.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import stats as _st

CONFIDENCE = 0.95


def _clean(values: Iterable[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)


def mean_ci(values: Iterable[float], confidence: float = CONFIDENCE) -> tuple[float, float, int]:
    """(mean, half-width of the two-sided Student-t CI, n), NaNs ignored; the half-width is NaN for n < 2
    and 0 when every value is equal (to within 1e-12 of the mean: float rounding, not spread)."""
    v = _clean(values)
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, 1
    if float(v.max() - v.min()) <= 1e-12 * abs(mean):  # equal up to float rounding (the same quantity summed
        return mean, 0.0, n                                # in another order): 0, not a 1e-14 residue
    sem = float(v.std(ddof=1)) / math.sqrt(n)
    return mean, float(_st.t.ppf(0.5 + confidence / 2, n - 1) * sem), n


def paired_difference(a: pd.Series, b: pd.Series, confidence: float = CONFIDENCE) -> tuple[float, float, int]:
    """Mean and CI half-width of ``a - b`` over the index values (seeds) both have; n is that count."""
    common = a.dropna().index.intersection(b.dropna().index)
    return mean_ci((a.loc[common] - b.loc[common]).to_numpy(), confidence)


def margin_verdict(mean: float, half: float, n: int, margin: float) -> str:
    """Whether "competitive" (no worse than the reference by more than ``margin``) is supported.

    ``reproduced``: the whole CI of (method - reference) lies above -margin. ``not reproduced``: the whole CI
    lies below -margin. Otherwise, or with fewer than two seeds (no CI), ``inconclusive``: the verdict never
    claims more than its interval supports.
    """
    if n < 2 or pd.isna(half) or pd.isna(mean):
        return "inconclusive"
    if mean - half > -margin:
        return "reproduced"
    if mean + half < -margin:
        return "not reproduced"
    return "inconclusive"


def binomial_se(accuracy_pct: float, n_images: int) -> float:
    """Standard error (percentage points) of one accuracy measured on ``n_images`` test images."""
    p = min(max(accuracy_pct / 100, 0.0), 1.0)
    return 100 * math.sqrt(p * (1 - p) / n_images) if n_images else math.nan


def fmt_ci(mean: float, half: float, n: int, digits: int = 1) -> str:
    """``"85.3 ± 1.2"`` (a 95% CI half-width); the mean alone with one seed; ``"–"`` when nothing was measured."""
    if n == 0 or pd.isna(mean):
        return "–"
    if n < 2 or pd.isna(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def fmt_accuracy(mean: float, half: float, n: int, diverged: int = 0, digits: int = 1) -> str:
    """:func:`fmt_ci` of a cell's accuracy, or ``"diverged (k/N seeds)"`` when k of its N seeds diverged: the
    mean of the seeds that finished would hide the runs that did not (their values stay in the CSV)."""
    if diverged:
        return f"diverged ({int(diverged)}/{int(n) + int(diverged)} seeds)"
    return fmt_ci(mean, half, n, digits)


def fmt_signed_ci(mean: float, half: float, n: int, digits: int = 1) -> str:
    """``"+1.3 ± 0.8"`` for differences."""
    if n == 0 or pd.isna(mean):
        return "–"
    text = f"{mean:+.{digits}f}"
    return text if n < 2 or pd.isna(half) else f"{text} ± {half:.{digits}f}"


def seed_band(frame: pd.DataFrame, x: str, y: str, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per ``x``: mean, CI half-width (0 where one seed) and n of ``y`` over the rows (seeds) at that ``x``."""
    rows = [(key, *mean_ci(g[y], confidence)) for key, g in frame.groupby(x)]
    out = pd.DataFrame(rows, columns=[x, "mean", "half", "n"])
    out["half"] = out["half"].fillna(0.0)
    return out
