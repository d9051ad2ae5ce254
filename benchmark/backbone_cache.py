"""A machine-wide, content-addressed cache of pre-trained backbones (the shape of timm's / the HF hub's cache).

``python -m benchmark pretrain`` consults it before training; every profile and every results folder shares it.
Location (:func:`default_cache_dir`): ``--cache-dir`` (the workflow's top-level ``backbone_cache``), else
``$SFPROMPT_BACKBONE_CACHE``, else ``$XDG_CACHE_HOME/sfprompt-bench/backbones``, else
``~/.cache/sfprompt-bench/backbones``.

**Key** (:func:`cache_settings`, :func:`cache_key`): the first 16 hex digits of the sha256 of ``settings.json``,
which holds everything that makes the weights and their card:

* the ``pretrain`` section (dataset, epochs, batch size, lr, weight decay, augmentation, ``max_train_samples``
  and ``max_test_samples``) except ``checkpoints``;
* the architecture (timm name, ``img_size``, ``patch_size``, ``embed_dim``, ``depth``, ``num_heads``, the
  resolved input size, mean and std) and the seed (init, data order, subsampling);
* the source dataset's declaration (:meth:`~benchmark.data.datasets.DatasetSpec.fingerprint`), the resolution
  it is decoded at (``data.cache_img_size`` or the input size) and the decoded cache's format version;
* the data itself: where it was read from (``mirror``, ``hub``, ...) and the digest of the decoded arrays
  (:func:`benchmark.data.cache.provenance`), so a mirror that differs from the hub copy (re-encoded, re-split)
  never shares an entry with it, while the same data at another path does;
* the code that makes it (:data:`CODE_FILES`, hashed file by file, and the subsampling function) and the
  versions of torch and timm (their initialisers and kernels).

Left out: runtime keys (``threads``, ``device``, ``keep_freed_memory``) and locations (``data.cache_dir``,
``data.data_root``), like :meth:`~benchmark.config.RunConfig.hash`; the card records the device used.
``checkpoints`` is left out because every per-epoch weight file is kept: a fraction added later is evaluated
from them, with no training (choice: a few MB per epoch for a small ViT, 4.8 MB for ``vit_s32``, against
re-training the trajectory).

**Layout** of an entry ``<cache>/<key>/``::

    settings.json               what the key hashes (human-readable)
    epoch-<e>.safetensors       the weights after epoch e (1-based), every epoch
    ckpt-<pct>.safetensors      the checkpoint at pct % of the epoch budget (a link to its epoch's file)
    ckpt-<pct>.json             its card: test_accuracy, epoch, fraction, ... (written when first asked for)
    final.safetensors           the weights after the last epoch
    final.json                  their card, with the sha256 of every weight file; written last: it marks a
                                complete entry
    resume.pt                   while training: model, optimizer, scheduler, RNG states, epoch index after the
                                last finished epoch (removed when the entry is complete)

``<cache>/<key>.lock`` (a ``filelock.FileLock``) is held while an entry is trained or completed, so two jobs
asking for one key train it once: the second waits, then finds a complete entry. Every file is written to a
temporary file and renamed. A complete entry whose files do not match their recorded sha256 (or whose card or
settings cannot be read) is **rebuilt**, with a warning naming the entry and the reason (choice: a corrupt
entry is a cache miss, never a failed job); an unreadable ``resume.pt`` starts training afresh, also warned.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import logging
import math
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

from benchmark.config import ARCH_KEYS, RunConfig
from benchmark.data.sampling import stratified_subsample

log = logging.getLogger(__name__)

ENV_VAR = "SFPROMPT_BACKBONE_CACHE"
FORMAT = 1
"""Layout version of an entry; part of the key."""
CODE_FILES = ("pretrain.py", "models/vit.py", "data/federated.py", "data/transforms.py", "seeding.py")
"""Sources (relative to the ``benchmark`` package) whose content is part of the key: the training loop and
recipe, the model factory, batching / normalisation / resizing, and the seed streams. Decoding changes are
covered by the image cache's format version, subsampling by the source of ``stratified_subsample``."""
PACKAGE = Path(__file__).resolve().parent


def default_cache_dir() -> Path:
    """``$SFPROMPT_BACKBONE_CACHE``, else ``$XDG_CACHE_HOME/sfprompt-bench/backbones``, else
    ``~/.cache/sfprompt-bench/backbones`` (absolute, ``~`` expanded)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base).expanduser().absolute() / "sfprompt-bench" / "backbones"


def checkpoint_epoch(fraction: float, epochs: int) -> int:
    """The epoch (1-based) that ends at ``fraction`` of ``epochs``: rounded half up, at least 1."""
    return min(epochs, max(1, math.floor(fraction * epochs + 0.5)))


def checkpoint_pct(fraction: float) -> int:
    """The integer percent that names a checkpoint (``ckpt-10``, ``vit_s32@10.safetensors``)."""
    return round(100 * fraction)


def code_fingerprint() -> dict[str, str]:
    """sha256 (16 hex digits) of each file of :data:`CODE_FILES` and of ``stratified_subsample``'s source."""
    out = {rel: hashlib.sha256((PACKAGE / rel).read_bytes()).hexdigest()[:16] for rel in CODE_FILES}
    out["data/datasets.py:stratified_subsample"] = hashlib.sha256(
        inspect.getsource(stratified_subsample).encode()).hexdigest()[:16]
    return out


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg).split("+")[0]  # 2.4.1+cpu and 2.4.1+cu121: the same code
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "absent"


def cache_settings(cfg: RunConfig) -> dict[str, Any]:
    """What the key hashes (see the module docstring); written to the entry's ``settings.json``."""
    from benchmark.data.cache import CACHE_FORMAT, provenance  # deferred: torch; the workflow imports this module
    from benchmark.data.datasets import spec_from_config  # deferred: with data.cache
    from benchmark.models.vit import input_spec  # deferred: timm and torch

    pre = {k: v for k, v in cfg.to_dict()["pretrain"].items() if k != "checkpoints"}
    model = {"backbone": cfg.model.backbone, **{k: getattr(cfg.model, k) for k in ARCH_KEYS}}
    img_size, mean, std = input_spec(dataclasses.replace(cfg.model, weights="scratch"))
    source = cfg.data.preset(cfg.pretrain.dataset)
    spec = spec_from_config(source)
    data = provenance(source, img_size)  # decodes the source dataset if its image cache is missing
    return {
        "format": FORMAT,
        "pretrain": pre,
        "model": {**model, "input_size": img_size, "mean": list(mean), "std": list(std)},
        "seed": cfg.seed,
        "source_dataset": json.loads(spec.fingerprint()),
        "source_data": {"source_kind": data["source_kind"], "data_digest": data["data_digest"]},
        "decode": {"img_size": cfg.data.cache_size(img_size), "image_cache_format": CACHE_FORMAT},
        "code": code_fingerprint(),
        "packages": {p: _version(p) for p in ("torch", "timm")},
    }


def cache_key(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    from benchmark.io import write_json as write  # deferred: io imports pandas; the workflow imports this module

    write(path, obj)


def link_or_copy(src: Path, dst: Path, link: bool = True) -> None:
    """Put ``src`` at ``dst`` atomically: a hard link (``link``; a copy across file systems) or a copy.

    Entries link inside the cache (``ckpt-<pct>`` and ``final`` are links to an epoch's file). Results folders get
    copies (:meth:`Entry.export`): a hard link shares its inode, and so its mtime, with the cache and with every
    other results folder linked to it, and Snakemake decides what is stale by mtime. A linked output is either
    older than its job's inputs (the job reruns forever), or, touched to now, makes the runs of every other
    results folder that links it look stale. A copy costs milliseconds (4.8 MB for ``vit_s32``)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            if not link:
                raise OSError("copy asked for")
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)  # a new file: its mtime is now
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


class Entry:
    """One cache entry, ``<root>/<key>/``, for the settings of a config (see the module docstring)."""

    def __init__(self, root: Path, settings: dict[str, Any]):
        self.root, self.settings = Path(root), settings
        self.key = cache_key(settings)
        self.dir = self.root / self.key

    # paths
    def epoch_file(self, epoch: int) -> Path:
        return self.dir / f"epoch-{epoch}.safetensors"

    def ckpt_file(self, pct: int, suffix: str = ".safetensors") -> Path:
        return self.dir / f"ckpt-{pct}{suffix}"

    @property
    def final(self) -> Path:
        return self.dir / "final.safetensors"

    @property
    def card_file(self) -> Path:
        return self.dir / "final.json"

    @property
    def resume_file(self) -> Path:
        return self.dir / "resume.pt"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        from filelock import FileLock  # deferred: filelock, only writing the cache

        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{self.key}.lock")):
            yield

    def info(self, hit: bool) -> dict[str, Any]:
        return {"key": self.key, "hit": hit, "dir": str(self.dir)}

    # state
    def problem(self) -> Optional[str]:
        """None if the entry is complete and intact; else why not (``"absent"`` for a missing or unfinished one)."""
        if not self.card_file.is_file():
            return "absent"
        try:
            card = json.loads(self.card_file.read_text())
            settings = json.loads((self.dir / "settings.json").read_text())
            files = card["files"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"unreadable card or settings ({type(exc).__name__})"
        if settings != json.loads(json.dumps(self.settings)):
            return "settings.json differs from the settings its key hashes"
        for name, digest in files.items():
            path = self.dir / name
            if not path.is_file():
                return f"{name} is missing"
            if sha256_file(path) != digest:
                return f"{name} does not match its recorded sha256"
        return None

    def is_complete(self) -> bool:
        """True for a complete, intact entry; a corrupt one is removed (with a warning) so it is rebuilt."""
        why = self.problem()
        if why is None:
            return True
        if why != "absent":
            log.warning("backbone cache entry %s is corrupt (%s): rebuilding it", self.dir, why)
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def card(self) -> dict[str, Any]:
        return json.loads(self.card_file.read_text())

    def card_of(self, pct: int) -> dict[str, Any]:
        return json.loads(self.ckpt_file(pct, ".json").read_text())

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.dir / "settings.json", self.settings)

    def load_resume(self) -> Optional[dict[str, Any]]:
        import torch  # deferred: torch, ~3 s

        if not self.resume_file.is_file():
            return None
        try:
            state = torch.load(self.resume_file, map_location="cpu", weights_only=True)
            if state.get("key") != self.key:
                raise ValueError("another key")
            return state
        except Exception as exc:  # a truncated or foreign file: train from the start
            log.warning("cannot resume from %s (%s: %s): training from the start", self.resume_file,
                        type(exc).__name__, exc)
            return None

    def save_resume(self, state: dict[str, Any]) -> None:
        import torch  # deferred: torch, ~3 s

        from benchmark.io import atomic_path  # deferred: pandas

        with atomic_path(self.resume_file) as tmp:
            torch.save({**state, "key": self.key}, tmp)

    def write_checkpoint(self, pct: int, epoch: int, card: dict[str, Any]) -> None:
        link_or_copy(self.epoch_file(epoch), self.ckpt_file(pct))
        write_json(self.ckpt_file(pct, ".json"), card)

    def publish(self, card: dict[str, Any], epochs: int) -> None:
        """Complete the entry: the final weights (a link to the last epoch's), then the card (last, with every
        weight file's sha256), then drop ``resume.pt``."""
        link_or_copy(self.epoch_file(epochs), self.final)
        names = [self.final.name] + [self.epoch_file(e).name for e in range(1, epochs + 1)]
        files = {n: sha256_file(self.dir / n) for n in names}
        write_json(self.card_file, {**card, "cache_key": self.key, "files": files})
        self.resume_file.unlink(missing_ok=True)

    def export(self, out: Path, card: dict[str, Any], src: Path) -> None:
        """Copy ``src`` to ``out`` (see :func:`link_or_copy`) and write ``card`` beside it (suffix ``.json``)."""
        link_or_copy(src, out, link=False)
        write_json(out.with_suffix(".json"), card)
