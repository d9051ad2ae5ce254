"""Decode a dataset's images once into a compact uint8 array cache, and load it back in about a second.

One safetensors file per (dataset, image size), ``{cache_dir}/{dataset}-{img_size}px.safetensors``, holds

* ``train_images``, ``test_images``: uint8 ``[N, 3, img_size, img_size]`` (RGB, channels first, 0..255);
* ``train_labels``, ``test_labels``: int64 ``[N]``;
* metadata (strings): format version, dataset, image size, class names (JSON), origin, counts, and the
  dataset's declaration (:meth:`~benchmark.data.datasets.DatasetSpec.fingerprint`): a file written for another
  declaration of the same name (a changed source, split or column) is rebuilt, not reused.

Pre-processing, applied once at build time:

* every image is converted to RGB (grayscale is replicated to 3 channels, palettes expanded, alpha dropped
  without compositing);
* a non-square image is centre-cropped to a square first (departure from a plain resize, which would distort
  the aspect ratio; only Flowers-102 has non-square images among the presets); images of mixed sizes are
  resized one by one, so any declared dataset ends up at ``img_size``; JPEGs much larger
  than ``img_size`` are decoded at a reduced DCT scale (PIL ``draft``), never below ``img_size``;
* the square is resized to ``img_size`` with ``torch.nn.functional.interpolate`` (bilinear, antialias,
  rounded back to uint8). Images already at ``img_size`` are copied untouched.

An image that cannot be decoded stops the build with one line naming the split, the row and, for parquet
sources, the shard file and its row (imagefolder: the image file); the half-built cache, its lock file and a
cache folder this build created are removed, so nothing is left behind.

Writes are atomic (a temporary file in the same folder, then ``os.replace``) and serialised by a
``filelock.FileLock`` on ``<file>.lock``, so concurrent processes (e.g. parallel Snakemake jobs) neither
corrupt the cache nor decode the same dataset twice: the second one waits and then loads the first one's file.

Sizes: 60,000 images at 32 px take 184 MB; the cache grows with ``img_size**2`` (224 px: 9 GB), so for large
inputs cache at the native size and upsample per batch with :func:`benchmark.data.transforms.resize`.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from PIL import Image as PILImage
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from benchmark.config import DataConfig, cache_file_name
from benchmark.data.datasets import DatasetSpec, get_spec, load_dataset_spec, spec_from_config
from benchmark.data.sampling import select
from benchmark.data.sources import source_kind
from benchmark.errors import ConfigError, DatasetError

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

CACHE_FORMAT = "2"
"""Bumped whenever the file layout or the pre-processing changes; older files are rebuilt."""
_DECODE_BATCH = 256
"""Images decoded (and resized) per step; bounds the float32 resize buffer (256 x 3 x 224 x 224 x 4 B = 154 MB)."""


@dataclass
class ImageSet:
    """Images and labels of one split, held in memory.

    Attributes:
        images: uint8 ``[N, 3, H, W]``, RGB, values 0..255 (normalise per batch with
            :func:`benchmark.data.transforms.normalize`).
        labels: int64 ``[N]``, class ids in ``[0, len(classes))``.
        classes: Class names, indexed by class id.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: np.ndarray | torch.Tensor) -> "ImageSet":
        """A new ImageSet holding copies of the rows at ``indices``."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return ImageSet(self.images[idx].contiguous(), self.labels[idx].contiguous(), list(self.classes))


# ----------------------------------------------------------------------------------------------------------
# public API


def cache_path(cache_dir: str | os.PathLike, dataset: str, img_size: int) -> Path:
    """The cache file of ``(dataset, img_size)``: ``{cache_dir}/{dataset}-{img_size}px.safetensors``."""
    return Path(cache_dir) / cache_file_name(dataset, img_size)


def build_cache(dataset: str | DatasetSpec, img_size: int, data_root: str | None = None,
                cache_dir: str | os.PathLike = "results/cache") -> Path:
    """Decode ``dataset`` at ``img_size`` pixels into the cache file, unless a current one exists.

    Idempotent and safe to call from concurrent processes (file lock, atomic replace).

    Args:
        dataset: A preset's name or a declaration (:func:`benchmark.data.datasets.spec_from_config`).
        img_size: Side of the square output images, in pixels.
        data_root: Mirror root of ``hf:`` sources (None: ``$BENCHMARK_DATA_ROOT``).
        cache_dir: Folder of cache files (created if missing).

    Returns:
        Path of the cache file.

    Raises:
        UnknownNameError: unknown dataset. ConfigError: ``img_size < 1``. DatasetError: unreadable source
        data or an existing cache file that cannot be read.
    """
    return _ensure_cache(dataset, img_size, data_root, cache_dir)[0]


def read_cache(path: str | os.PathLike) -> tuple[ImageSet, ImageSet]:
    """Load a cache file as ``(train, test)`` :class:`ImageSet` s (about 1 s for 60,000 32-px images)."""
    path = Path(path)
    meta = _read_metadata(path)
    if meta is None:
        raise DatasetError(f"cache file {str(path)!r} does not exist")
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise DatasetError(f"cache file {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
                           f"delete it to rebuild") from None
    classes = json.loads(meta["classes"])
    return (ImageSet(tensors["train_images"], tensors["train_labels"], classes),
            ImageSet(tensors["test_images"], tensors["test_labels"], list(classes)))


def load_image_data(cfg: DataConfig, img_size: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """A run's ``(train, evaluation)`` images: the dataset ``cfg`` declares, from the cache (built first if
    missing) at :meth:`~benchmark.config.DataConfig.cache_size`, then the rows :func:`~benchmark.data.sampling.select`
    chooses.

    The evaluation set is the (subsampled) test split, or, with ``cfg.validation_fraction``, a stratified
    validation set held out of the subsampled train split (:func:`~benchmark.data.sampling.validation_split`,
    seeded by the run seed); ``train`` is then the rest, and the test split is not returned at all.

    Args:
        cfg: Data section of the run config (the dataset or its declaration, data_root, cache_dir,
            cache_img_size, max_train/test_samples, validation_fraction).
        img_size: The backbone's input size, in pixels; the cache is read at ``cfg.cache_img_size`` if set.
        seed: The run seed. ``max_train_samples`` / ``max_test_samples`` keep a stratified subsample drawn
            with this seed (see :func:`~benchmark.data.sampling.stratified_subsample`); the same seed gives the
            same subsample.

    Returns:
        ``(train, test)`` or ``(train minus validation, validation)``; rows keep the cache's (source) order.
    """
    path, _ = _ensure_cache(spec_from_config(cfg), cfg.cache_size(img_size), cfg.data_root, cfg.cache_dir)
    return select(*read_cache(path), cfg, seed)


# ----------------------------------------------------------------------------------------------------------
# building


def _read_metadata(path: Path) -> Optional[dict[str, str]]:
    """The file's metadata, None if the file is absent; DatasetError if it is not a readable cache."""
    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:
        raise DatasetError(f"cache file {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); "
                           f"delete it to rebuild") from None
    if "format" not in meta or "classes" not in meta:
        raise DatasetError(f"cache file {str(path)!r} is not a benchmark image cache; delete it to rebuild")
    return meta


def _is_current(path: Path, fingerprint: str, kind: str) -> bool:
    meta = _read_metadata(path)
    if meta is None:
        return False
    if meta["format"] != CACHE_FORMAT:
        log.warning("cache file %s has format %s (current %s): rebuilding", path, meta["format"], CACHE_FORMAT)
        return False
    if meta.get("spec") != fingerprint:
        log.warning("cache file %s was built for another declaration of its dataset: rebuilding", path)
        return False
    if meta.get("source_kind") != kind:
        log.warning("cache file %s was decoded from %s data, this run reads %s data: rebuilding", path,
                    meta.get("source_kind", "unrecorded"), kind)
        return False
    return True


def data_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 (16 hex digits) of the decoded arrays (both splits' images and labels, with their shapes): what
    every model trained on this cache saw. Two sources of the same images agree; a re-encoded or re-split copy
    does not."""
    h = hashlib.sha256()
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        t = tensors[key].contiguous()
        h.update(f"{key}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def provenance(cfg: DataConfig, img_size: int) -> dict[str, str]:
    """Where a run's decoded data came from: the dataset, its ``origin`` (hub id, mirror folder, ...), the source
    kind, the image cache it was read from and the :func:`data_digest` of its arrays (recorded in ``env.json``
    and in the backbone cache key). Builds the cache if it is missing."""
    path, _ = _ensure_cache(spec_from_config(cfg), cfg.cache_size(img_size), cfg.data_root, cfg.cache_dir)
    meta = _read_metadata(path)
    return {"dataset": meta["dataset"], "origin": meta["origin"], "source_kind": meta["source_kind"],
            "data_digest": meta["data_digest"], "cache_file": path.name}


def _ensure_cache(dataset: str | DatasetSpec, img_size: int, data_root: str | None,
                  cache_dir: str | os.PathLike) -> tuple[Path, bool]:
    """Return ``(path, built)``: ``built`` is True when this call decoded the data (False: it was cached).

    Consulting the declaration is cheap (Hugging Face ``datasets`` is imported only to decode).
    """
    spec = get_spec(dataset)
    if int(img_size) < 1:
        raise ConfigError(f"image size must be >= 1 pixel, got {img_size!r}")
    path = cache_path(cache_dir, spec.name, img_size)
    fingerprint = spec.fingerprint()
    kind = source_kind(spec.scheme, spec.name, data_root)
    if _is_current(path, fingerprint, kind):
        return path, False
    # Read and check the source before creating anything, so bad data leaves no folder or lock behind.
    loaded = load_dataset_spec(spec, data_root)
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = Path(str(path) + ".lock")
    try:
        with FileLock(str(lock)):
            if _is_current(path, fingerprint, kind):  # another process built it while we waited for the lock
                return path, False
            tensors: dict[str, torch.Tensor] = {}
            for split in ("train", "test"):
                images, labels = decode_split(loaded.splits[split], int(img_size), desc=f"decode {spec.name}/{split}",
                                              where=lambda row, s=split: f"dataset {spec.name!r} "
                                                                         f"{loaded.locate[s](row)}")
                tensors[f"{split}_images"], tensors[f"{split}_labels"] = images, labels
            metadata = {
                "format": CACHE_FORMAT, "dataset": spec.name, "img_size": str(int(img_size)),
                "classes": json.dumps(loaded.classes), "origin": loaded.origin, "spec": fingerprint,
                "source_kind": kind, "data_digest": data_digest(tensors),
                "num_train": str(len(tensors["train_labels"])), "num_test": str(len(tensors["test_labels"])),
            }
            _write_atomic(path, tensors, metadata)
    except BaseException:
        if not path.exists():  # nothing was built: leave no lock file or folder behind
            lock.unlink(missing_ok=True)
            for d in made:  # deepest first
                try:
                    d.rmdir()
                except OSError:
                    break
        raise
    log.info("cached %s at %d px in %s", spec.name, img_size, path)
    return path, True


def _write_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors creates 0600 files; use the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _decode_one(cell: dict, img_size: int) -> np.ndarray:
    """Decode one ``datasets.Image`` storage cell (``{"bytes", "path"}``) to a square uint8 ``[m, m, 3]``.

    A non-square image is centre-cropped to its shorter side. A JPEG much larger than ``img_size`` is
    decoded at a reduced DCT scale (PIL ``draft``, never below ``img_size``): faster, and the resize that
    follows antialiases anyway.
    """
    data = cell.get("bytes")
    img = PILImage.open(io.BytesIO(data) if data is not None else cell["path"])
    if img.format == "JPEG":
        img.draft("RGB", (img_size, img_size))
    img = img.convert("RGB")
    w, h = img.size
    if w != h:
        m = min(w, h)
        left, top = (w - m) // 2, (h - m) // 2
        img = img.crop((left, top, left + m, top + m))
    return np.asarray(img)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (restored on exit)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _resize(images: torch.Tensor, img_size: int) -> torch.Tensor:
    """uint8 ``[B, 3, h, w]`` -> uint8 ``[B, 3, img_size, img_size]`` (bilinear, antialias)."""
    if images.shape[-2:] == (img_size, img_size):
        return images
    out = F.interpolate(images.float(), size=(img_size, img_size), mode="bilinear", antialias=True,
                        align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def decode_split(ds: datasets.Dataset, img_size: int, desc: str = "decode",
                 where: Optional[Callable[[int], str]] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of a split to uint8 ``[N, 3, img_size, img_size]``, with int64 labels ``[N]``.

    ``ds`` has the columns ``image`` and ``label`` (:func:`benchmark.data.datasets.load_dataset_spec`).
    Reads the raw encoded bytes through Arrow (``datasets`` builds no per-row dicts or PIL objects), decodes
    them with PIL, ``_DECODE_BATCH`` at a time, and resizes equal-size images as one batch. Measured on the
    2-core machines: about 0.15 ms per 32-px JPEG, so CIFAR-10's 60,000 images take about 10 s. Deliberately
    single-threaded: a thread pool gained nothing (PIL's per-image cost is Python header parsing, under the
    GIL), and torch's intra-op threads on these small batches cost more in synchronisation than they save
    (36 ms vs 1.5 ms per batch on a loaded 2-core machine), so they are set to 1 while decoding.

    Raises:
        DatasetError: an image cannot be decoded; the message names its row (``where(row)``, if given) and,
        for images stored as files, the file.
    """
    import datasets  # deferred: HF datasets, ~0.6 s

    n = ds.num_rows
    raw = ds.cast_column("image", datasets.Image(decode=False)).with_format("arrow")
    images = torch.empty((n, 3, img_size, img_size), dtype=torch.uint8)
    labels = torch.empty((n,), dtype=torch.int64)
    start = 0
    quiet = os.environ.get("TQDM_DISABLE", "") not in ("", "0")  # the CLI's -q sets it (read per call)
    with _torch_threads(1), tqdm(total=n, desc=desc, unit="img", mininterval=1.0, disable=quiet) as bar:
        for batch in raw.iter(batch_size=_DECODE_BATCH):
            arrays = []
            for i, cell in enumerate(batch.column("image").to_pylist()):
                try:
                    arrays.append(_decode_one(cell, img_size))
                except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
                    row = where(start + i) if where else f"row {start + i}"
                    file = f", image file {cell['path']}" if cell.get("path") and cell.get("bytes") is None else ""
                    raise DatasetError(f"cannot decode the image of {row}{file}: {type(exc).__name__}: "
                                       f"{' '.join(str(exc).split())[:200]}") from None
            stop = start + len(arrays)
            if len({a.shape for a in arrays}) == 1:
                images[start:stop] = _resize(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2), img_size)
            else:  # mixed sizes: resize one by one
                for i, a in enumerate(arrays):
                    images[start + i] = _resize(torch.from_numpy(np.array(a)).permute(2, 0, 1)[None], img_size)[0]
            labels[start:stop] = torch.from_numpy(batch.column("label").to_numpy().astype(np.int64))
            bar.update(stop - start)
            start = stop
    return images, labels
