"""Tests of benchmark.data: dataset registry and resolution, the uint8 image cache, subsampling, transforms.

Offline and fast: synthetic parquet mirrors written to tmp_path, the package-shipped ``digits`` / ``mnist5k``,
and one real-mirror test on a single shard of /work/shared/data (skipped when that folder is absent).

The full-size cache build is marked ``slow`` (the marker is registered in pyproject.toml and deselected by
default; run it with ``-m slow``). tests/conftest.py sets ``HF_HUB_OFFLINE=1`` before ``datasets`` is imported;
the autouse fixture below also patches the already-imported modules, so hub look-ups here fail at once even
when this file runs alone, and HF's parquet conversions go to a temporary cache.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import datasets
from benchmark.config import DataConfig
from benchmark.data import cache as cache_mod
from benchmark.data import (
    DATASETS,
    SOURCES,
    ImageSet,
    build_cache,
    cache_path,
    describe,
    get_spec,
    load_hf,
    load_image_data,
    normalize,
    read_cache,
    resize,
    stratified_subsample,
)
from benchmark.errors import DatasetError, UnknownNameError

SHARED = Path(os.environ.get("BENCHMARK_SHARED_DATA", "/work/shared/data"))
NAMES = [f"c{i}" for i in range(10)]  # the presets written as mirrors below declare 10 classes


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network, no shared HF cache: hub look-ups fail at once, parquet conversions go to a tmp dir."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_cache"))
    monkeypatch.delenv("BENCHMARK_DATA_ROOT", raising=False)


def _arrays(n: int, size: int, seed: int, gray: bool = False) -> np.ndarray:
    shape = (n, size, size) if gray else (n, size, size, 3)
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def write_mirror(root: Path, name: str = "cifar10", splits=("train", "test"), n: int = 24, size: int = 8,
                 image_col: str = "img", label_col: str = "label", gray: bool = False) -> dict[str, np.ndarray]:
    """Write a tiny HF-style parquet mirror ``root/name/{split}-00000-of-00001.parquet``; return the images."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    features = datasets.Features({image_col: datasets.Image(), label_col: datasets.ClassLabel(names=NAMES)})
    out = {}
    for k, split in enumerate(splits):
        imgs = _arrays(n, size, seed=k, gray=gray)
        labels = np.arange(n) % len(NAMES)
        ds = datasets.Dataset.from_dict({image_col: list(imgs), label_col: labels.tolist()}, features=features)
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
        out[split] = imgs
    return out


# ----------------------------------------------------------------------------------------------------------
# registry and resolution


def test_registry_lists_all_datasets_with_known_sources():
    expected = {"cifar10", "cifar100", "fashion_mnist", "svhn", "flowers102", "digits", "mnist5k"}
    assert expected <= set(DATASETS.names())
    for name in DATASETS:
        spec = get_spec(name)
        assert spec.name == name and spec.scheme in SOURCES
    assert get_spec("svhn").hub_config == "cropped_digits" and get_spec("svhn").hub_id == "ufldl-stanford/svhn"
    assert get_spec("cifar100").label_column == "fine_label"


def test_unknown_dataset_lists_valid_names(tmp_path):
    with pytest.raises(UnknownNameError) as err:
        get_spec("imagenet")
    assert "'imagenet'" in str(err.value) and "cifar10" in str(err.value) and "digits" in str(err.value)
    with pytest.raises(UnknownNameError):
        load_image_data(DataConfig(dataset="imagenet", cache_dir=str(tmp_path)), 32, seed=0)


def test_empty_data_root_is_one_line_error_naming_folder_and_hub_id(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_hf("cifar10", str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "cifar10") in msg and "uoft-cs/cifar10" in msg


def test_unset_data_root_error_names_the_env_variable(monkeypatch):
    with pytest.raises(DatasetError) as err:
        load_hf("svhn", None)
    msg = str(err.value)
    assert "\n" not in msg and "BENCHMARK_DATA_ROOT" in msg and "ufldl-stanford/svhn" in msg


def test_env_data_root_is_used(monkeypatch, tmp_path):
    write_mirror(tmp_path)
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(tmp_path))
    dd = load_hf("cifar10", None)
    assert dd["train"].num_rows == 24


def test_mirror_lacking_a_split_names_folder_and_split(tmp_path):
    write_mirror(tmp_path, splits=("train",))
    with pytest.raises(DatasetError) as err:
        load_hf("cifar10", str(tmp_path))
    msg = str(err.value)
    assert str(tmp_path / "cifar10") in msg and "'test'" in msg and "\n" not in msg


def test_truncated_shard_is_named(tmp_path):
    write_mirror(tmp_path)
    shard = tmp_path / "cifar10" / "test-00000-of-00001.parquet"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError) as err:
        load_hf("cifar10", str(tmp_path))
    assert str(shard) in str(err.value)


def test_mirror_with_wrong_columns_is_reported(tmp_path):
    write_mirror(tmp_path, image_col="picture")
    with pytest.raises(DatasetError) as err:
        load_hf("cifar10", str(tmp_path))
    assert "img" in str(err.value) and "picture" in str(err.value)


def test_synthetic_mirror_loads_and_caches_exact_pixels(tmp_path):
    src = write_mirror(tmp_path / "data")
    dd = load_hf("cifar10", str(tmp_path / "data"))
    assert set(dd) == {"train", "test"} and dd["train"].features["label"].names == NAMES
    train, test = load_image_data(DataConfig(dataset="cifar10", data_root=str(tmp_path / "data"),
                                             cache_dir=str(tmp_path / "cache")), img_size=8, seed=0)
    assert train.images.dtype == torch.uint8 and train.images.shape == (24, 3, 8, 8)
    assert train.labels.dtype == torch.int64 and train.classes == NAMES
    # lossless PNG at the native size: the cache holds the very pixels (HWC -> CHW)
    assert torch.equal(train.images, torch.from_numpy(src["train"]).permute(0, 3, 1, 2))
    assert torch.equal(test.labels, torch.arange(24) % 10)


def test_resize_and_grayscale_to_three_channels(tmp_path):
    write_mirror(tmp_path / "data", name="fashion_mnist", image_col="image", gray=True, size=12)
    path = build_cache("fashion_mnist", 6, str(tmp_path / "data"), str(tmp_path / "cache"))
    train, _ = read_cache(path)
    assert train.images.shape == (24, 3, 6, 6)
    gray = train.images[:, 0]
    assert torch.equal(gray, train.images[:, 1]) and torch.equal(gray, train.images[:, 2])


def test_variable_size_images_are_centre_cropped_then_resized(tmp_path):
    folder = tmp_path / "data" / "flowers102"
    folder.mkdir(parents=True)
    imgs = []
    for h, w in [(20, 30), (30, 20), (16, 16), (24, 40)]:
        a = np.zeros((h, w, 3), dtype=np.uint8)  # black margins, a grey central square
        m = min(h, w)
        a[(h - m) // 2:(h - m) // 2 + m, (w - m) // 2:(w - m) // 2 + m] = 100
        imgs.append(a)
    names = [f"f{i}" for i in range(102)]  # the flowers102 preset declares 102 classes
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    for split in ("train", "test"):
        ds = datasets.Dataset.from_dict({"image": imgs, "label": [0, 1, 2, 3]}, features=features)
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))
    train, _ = read_cache(build_cache("flowers102", 8, str(tmp_path / "data"), str(tmp_path / "cache")))
    assert train.images.shape == (4, 3, 8, 8)
    assert int(train.images.min()) == 100 == int(train.images.max())


def test_describe_digits():
    text = describe("digits")
    assert "1,437" in text and "360" in text and "classes (10)" in text


# ----------------------------------------------------------------------------------------------------------
# package-shipped datasets


@pytest.mark.parametrize("name,size,n_train,n_test", [("digits", 8, 1437, 360), ("mnist5k", 28, 4000, 1000)])
def test_package_datasets_load_with_fixed_stratified_split(tmp_path, name, size, n_train, n_test):
    cfg = DataConfig(dataset=name, cache_dir=str(tmp_path))
    train, test = load_image_data(cfg, img_size=size, seed=123)
    assert train.images.shape == (n_train, 3, size, size) and test.images.shape == (n_test, 3, size, size)
    assert train.classes == [str(i) for i in range(10)] and train.num_classes == 10
    assert int(train.labels.min()) == 0 and int(train.labels.max()) == 9
    assert int(train.images.max()) == 255
    # the split is fixed (seed independent) and stratified: ~20% of every class is in the test split
    counts = np.bincount(test.labels.numpy(), minlength=10)
    totals = counts + np.bincount(train.labels.numpy(), minlength=10)
    assert np.all(np.abs(counts - 0.2 * totals) <= 1)


def test_package_split_does_not_depend_on_the_run_seed(tmp_path):
    _, a = load_image_data(DataConfig(dataset="digits", cache_dir=str(tmp_path / "a")), 8, seed=1)
    _, b = load_image_data(DataConfig(dataset="digits", cache_dir=str(tmp_path / "b")), 8, seed=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


# ----------------------------------------------------------------------------------------------------------
# cache


def test_cache_second_build_is_a_load_with_identical_bytes(tmp_path):
    path, built = cache_mod._ensure_cache("digits", 8, None, tmp_path)
    assert built and path == cache_path(tmp_path, "digits", 8)
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns
    path2, built2 = cache_mod._ensure_cache("digits", 8, None, tmp_path)
    assert path2 == path and not built2
    assert build_cache("digits", 8, None, str(tmp_path)) == path
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def _build_in_child(cache_dir: str) -> bool:
    return cache_mod._ensure_cache("digits", 8, None, cache_dir)[1]


def test_concurrent_builds_decode_once(tmp_path):
    with mp.get_context("fork").Pool(2) as pool:
        built = pool.map(_build_in_child, [str(tmp_path)] * 2)
    assert sorted(built) == [False, True]
    train, test = read_cache(cache_path(tmp_path, "digits", 8))
    assert len(train) == 1437 and len(test) == 360


def test_corrupt_cache_file_is_named(tmp_path):
    path = cache_path(tmp_path, "digits", 8)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(DatasetError) as err:
        build_cache("digits", 8, None, str(tmp_path))
    assert str(path) in str(err.value)


# ----------------------------------------------------------------------------------------------------------
# subsampling


def test_stratified_subsample_is_stratified_seeded_and_sorted():
    labels = np.repeat(np.arange(5), [400, 300, 200, 80, 20])  # N = 1000, imbalanced
    idx = stratified_subsample(labels, 100, seed=0)
    assert idx.dtype == np.int64 and len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx], minlength=5).tolist() == [40, 30, 20, 8, 2]
    assert np.array_equal(idx, stratified_subsample(labels, 100, seed=0))
    assert not np.array_equal(idx, stratified_subsample(labels, 100, seed=1))
    odd = stratified_subsample(labels, 33, seed=0)
    assert len(odd) == 33
    assert np.all(np.abs(np.bincount(labels[odd], minlength=5) - 0.033 * np.bincount(labels)) < 1)
    assert np.array_equal(stratified_subsample(labels, 5000, seed=0), np.arange(1000))


def test_load_image_data_subsamples_with_the_run_seed(tmp_path):
    cfg = DataConfig(dataset="digits", cache_dir=str(tmp_path), max_train_samples=200, max_test_samples=50)
    a_train, a_test = load_image_data(cfg, 8, seed=0)
    b_train, _ = load_image_data(cfg, 8, seed=0)
    c_train, _ = load_image_data(cfg, 8, seed=1)
    assert len(a_train) == 200 and len(a_test) == 50
    assert np.all(np.abs(np.bincount(a_train.labels.numpy(), minlength=10) - 20) <= 1)
    assert torch.equal(a_train.images, b_train.images)
    assert not torch.equal(a_train.images, c_train.images)


def test_imageset_subset():
    s = ImageSet(torch.arange(4 * 3, dtype=torch.uint8).view(4, 3, 1, 1), torch.arange(4), ["a", "b", "c", "d"])
    sub = s.subset(np.array([1, 3]))
    assert len(sub) == 2 and sub.labels.tolist() == [1, 3] and sub.num_classes == 4


# ----------------------------------------------------------------------------------------------------------
# transforms


def test_normalize_matches_reference():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    y = normalize(x, mean, std)
    ref = (x.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert y.dtype == torch.float32 and y.device == x.device
    assert torch.allclose(y, ref, atol=1e-5)
    with pytest.raises(TypeError):
        normalize(x.float(), mean, std)
    with pytest.raises(ValueError):
        normalize(x, (0.5,), (0.5,))


def test_resize_keeps_dtype_and_is_noop_at_same_size():
    x = torch.full((2, 3, 4, 4), 200, dtype=torch.uint8)
    assert resize(x, 4) is x
    y = resize(x, 8)
    assert y.shape == (2, 3, 8, 8) and y.dtype == torch.uint8 and int(y.min()) == 200 == int(y.max())


# ----------------------------------------------------------------------------------------------------------
# the real shared mirror (one shard per split, to stay fast)


@pytest.mark.skipif(not (SHARED / "cifar10").is_dir(), reason="shared cifar10 mirror absent")
def test_real_cifar10_mirror_one_shard(tmp_path):
    import pyarrow.parquet as pq

    # Test-only shortcut: the first rows of one real shard per split, schema (HF features) kept.
    root = tmp_path / "data" / "cifar10"
    root.mkdir(parents=True)
    for split, shard, rows in (("train", "train-00000-of-00005", 2000), ("test", "test-00000-of-00001", 1000)):
        table = pq.read_table(SHARED / "cifar10" / f"{shard}.parquet").slice(0, rows)
        pq.write_table(table, root / f"{split}-00000-of-00001.parquet")
    cfg = DataConfig(dataset="cifar10", data_root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"),
                     max_train_samples=500, max_test_samples=200)
    train, test = load_image_data(cfg, img_size=32, seed=0)
    assert train.images.shape == (500, 3, 32, 32) and test.images.shape == (200, 3, 32, 32)
    assert train.classes[:3] == ["airplane", "automobile", "bird"] and len(train.classes) == 10
    full_train, full_test = read_cache(cache_path(tmp_path / "cache", "cifar10", 32))
    assert len(full_train) == 2000 and len(full_test) == 1000
    expected = np.bincount(full_train.labels.numpy(), minlength=10) * 500 / 2000
    assert np.all(np.abs(np.bincount(train.labels.numpy(), minlength=10) - expected) < 1)
    assert 60 < float(train.images.float().mean()) < 200  # real photos, not blank decodes


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10").is_dir(), reason="shared cifar10 mirror absent")
def test_real_cifar10_full_cache(tmp_path):
    path = build_cache("cifar10", 32, str(SHARED), str(tmp_path))
    train, test = read_cache(path)
    assert train.images.shape == (50_000, 3, 32, 32) and test.images.shape == (10_000, 3, 32, 32)
    assert np.all(np.bincount(train.labels.numpy(), minlength=10) == 5000)
