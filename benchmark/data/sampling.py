"""Which rows of a dataset a run reads: seeded, stratified subsamples and the validation hold-out.

:func:`select` is the one place a run's data section chooses them, after the decoded splits are read
(:func:`benchmark.data.cache.load_image_data`): ``max_train_samples`` of the train split, then with
``validation_fraction`` a validation set held out of those (the test split is then never read), else
``max_test_samples`` of the test split. Every draw is stratified (:func:`stratified_subsample`) and seeded by the
run seed, so one seed always reads the same rows.
"""

from __future__ import annotations

import math
from typing import Protocol, TypeVar

import numpy as np

from benchmark.config import DataConfig
from benchmark.errors import ConfigError


class Rows(Protocol):
    """What :func:`select` needs of a decoded split (:class:`benchmark.data.cache.ImageSet`): its labels and a
    row subset (a protocol, so this module stays below the cache that imports it)."""

    labels: object

    def __len__(self) -> int: ...

    def subset(self, indices: np.ndarray): ...


ImageSet = TypeVar("ImageSet", bound=Rows)


def select(train: ImageSet, test: ImageSet, cfg: DataConfig, seed: int) -> tuple[ImageSet, ImageSet]:
    """A run's ``(train, evaluation)`` rows of the decoded splits, as the data section ``cfg`` chooses them.

    Args:
        train: The dataset's whole train split, in source order.
        test: Its whole test split.
        cfg: The run's data section (``max_train_samples``, ``validation_fraction``, ``max_test_samples``).
        seed: The run seed (the draws of :func:`stratified_subsample` and :func:`validation_split`).

    Returns:
        ``(train, test)`` subsampled, or ``(train minus validation, validation)`` with ``validation_fraction``;
        rows keep their source order.
    """
    if cfg.max_train_samples is not None and cfg.max_train_samples < len(train):
        train = train.subset(stratified_subsample(train.labels.numpy(), cfg.max_train_samples, seed))
    if cfg.validation_fraction is not None:  # carved from the training data; the test split is never read
        keep, val = validation_split(train.labels.numpy(), cfg.validation_fraction, seed)
        return train.subset(keep), train.subset(val)
    if cfg.max_test_samples is not None and cfg.max_test_samples < len(test):
        test = test.subset(stratified_subsample(test.labels.numpy(), cfg.max_test_samples, seed))
    return train, test


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train, validation)`` row indices: a seeded, stratified hold-out of ``ceil(fraction * N)`` rows.

    The validation rows are a :func:`stratified_subsample` drawn with the run seed's own ``"validation"``
    stream (:func:`benchmark.seeding.seed_for`), so they differ from the ``max_train_samples`` draw of the
    same seed and never shift another consumer's numbers; ``train`` is every other row. Both sorted, disjoint,
    together all of ``range(N)``. Drawn from the train split only: the test split is never involved.

    Args:
        labels: int labels ``[N]`` of the (subsampled) train split.
        fraction: Share held out, in (0, 1).
        seed: The run seed.
    """
    from benchmark.seeding import seed_for  # deferred: seeding imports torch, which describing a dataset never needs

    labels = np.asarray(labels)
    if not 0 < fraction < 1:
        raise ConfigError(f"config key 'data.validation_fraction' must be in (0, 1), got {fraction!r}")
    n_val = math.ceil(round(fraction * len(labels), 9))
    if not 0 < n_val < len(labels):
        raise ConfigError(f"config key 'data.validation_fraction' = {fraction:g} of {len(labels)} training samples "
                          f"leaves no validation or no training sample")
    val = stratified_subsample(labels, n_val, seed_for(seed, "validation"))
    return np.setdiff1d(np.arange(len(labels), dtype=np.int64), val), val


# The source of this function, docstring included, is part of the pre-trained backbone cache's key
# (benchmark.backbone_cache.code_fingerprint): it is kept byte for byte (its docstring still says where it
# was defined before this module) so that moving it here retrained nothing; tests/test_data_sampling.py pins it.
def stratified_subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, stratified subsample of ``n`` rows.

    Each class keeps ``n * count / N`` rows, rounded by the largest-remainder method (ties go to the lower
    class id), so class proportions match the full split to within one sample; rows inside a class are drawn
    without replacement by ``numpy.random.default_rng(seed)``. Public as
    ``benchmark.data.cache.stratified_subsample``; defined here so the fixed split of the package-shipped
    datasets can use it without an import cycle.

    Args:
        labels: int labels ``[N]``.
        n: Rows to keep; ``n >= N`` keeps all.
        seed: Seed of the draw.

    Returns:
        int64 indices, sorted ascending.
    """
    labels = np.asarray(labels)
    total = len(labels)
    if n < 0:
        raise ValueError(f"subsample size must be >= 0, got {n}")
    if n >= total:
        return np.arange(total, dtype=np.int64)
    classes, counts = np.unique(labels, return_counts=True)
    keep, remainder = np.divmod(counts.astype(np.int64) * n, total)  # exact integer quotas
    order = np.argsort(-remainder, kind="stable")
    keep[order[: n - int(keep.sum())]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c, k in zip(classes, keep)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


