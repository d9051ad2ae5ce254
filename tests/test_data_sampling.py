"""The rows a run reads (benchmark.data.sampling) and the one rule for the decoded cache's size."""

from __future__ import annotations

import pytest
import torch

from benchmark import backbone_cache
from benchmark.config import DataConfig
from benchmark.data.cache import ImageSet
from benchmark.data.sampling import select, stratified_subsample, validation_split


def _images(n: int, classes: int = 4) -> ImageSet:
    """``n`` 1-px images whose pixel is the row number (so rows can be traced), labels cycling over classes."""
    images = torch.arange(n, dtype=torch.int64).reshape(n, 1, 1, 1).expand(n, 3, 1, 1).to(torch.uint8)
    return ImageSet(images.contiguous(), torch.arange(n) % classes, [str(c) for c in range(classes)])


def _rows(s: ImageSet) -> list[int]:
    return s.images[:, 0, 0, 0].tolist()


def test_select_subsamples_train_and_test_with_the_run_seed():
    train, test = _images(200), _images(100)
    cfg = DataConfig(max_train_samples=40, max_test_samples=20)
    a_train, a_test = select(train, test, cfg, seed=3)
    assert _rows(a_train) == stratified_subsample(train.labels.numpy(), 40, 3).tolist()
    assert _rows(a_test) == stratified_subsample(test.labels.numpy(), 20, 3).tolist()
    assert select(train, test, DataConfig(), seed=3) == (train, test)  # nothing asked: the splits as they are


def test_select_holds_validation_out_of_the_subsampled_train_split_and_never_reads_test():
    train, test = _images(200), _images(100)
    cfg = DataConfig(max_train_samples=50, max_test_samples=20, validation_fraction=0.2)
    rest, val = select(train, test, cfg, seed=1)
    sub = stratified_subsample(train.labels.numpy(), 50, 1)
    keep, held = validation_split(train.labels.numpy()[sub], 0.2, 1)
    assert _rows(rest) == sub[keep].tolist() and _rows(val) == sub[held].tolist()
    assert len(val) == 10 and not set(_rows(rest)) & set(_rows(val))


def test_cache_size_is_cache_img_size_else_the_input_size():
    assert DataConfig().cache_size(224) == 224
    assert DataConfig(cache_img_size=32).cache_size(224) == 32

    def input_size() -> int:
        raise AssertionError("the input size is asked for only when cache_img_size is unset")

    assert DataConfig(cache_img_size=32).cache_size(input_size) == 32
    assert DataConfig().cache_size(lambda: 16) == 16


def test_the_subsampling_source_in_the_backbone_cache_key_is_unchanged():
    """Moving stratified_subsample must not change the pre-trained backbone cache's key (every cached backbone
    would be trained again): its source, docstring included, hashes as it did at 658ac84."""
    assert backbone_cache.code_fingerprint()["data/datasets.py:stratified_subsample"] == "5dd4059ca5068fbf"


def test_the_cache_module_no_longer_re_exports_the_registry():
    from benchmark.data import cache

    with pytest.raises(AttributeError):
        cache.stratified_subsample  # noqa: B018 (import it from benchmark.data.sampling)
