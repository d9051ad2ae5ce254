"""Divide the train split among federated clients with flwr-datasets' partitioners, and persist the result.

Schemes (registered in :data:`PARTITIONERS`, selected by ``partition.scheme``):

* ``iid``: ``IidPartitioner`` (equal contiguous shards).
* ``dirichlet``: ``DirichletPartitioner`` (Hsu et al. 2019 / Yurochkin et al. 2019): for each class, client
  shares are drawn from Dir(``alpha``); resampled until every client holds at least ``min_partition_size``
  samples (flwr-datasets gives up after 10 tries). ``self_balancing`` is off (flwr-datasets' default; the
  paper's sampler has no balancing).
* ``pathological``: ``PathologicalPartitioner`` (Li et al. 2022, NIID-Bench "#C=k"): every client holds
  exactly ``classes_per_client`` classes; each class is split evenly among the clients holding it. Class
  assignment mode ``first-deterministic`` as in that paper: client ``i`` always gets class ``i mod C``, the
  rest are drawn at random, so with at least as many clients as classes every class is used.

As flwr-datasets' own ``FederatedDataset`` does, the dataset is shuffled with the seed before it is handed to
the partitioner. This matters for ``IidPartitioner``, which takes contiguous shards and has no seed of its
own: without the shuffle "IID" clients would inherit the source's row order. The partitioners work on a tiny
``datasets.Dataset`` of ``{"label", "idx"}``; the ``idx`` column maps every client's rows back to indices into
the train :class:`~benchmark.data.cache.ImageSet`.

The result is a :class:`Partition`: sorted int64 indices per client, a class histogram and a content hash,
saved as JSON (``results/partitions/{dataset}/{partition}/seed{seed}.json``) and verified on load.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmark.config import PartitionConfig
from benchmark.errors import BenchmarkError, ConfigError, DatasetError
from benchmark.registry import Registry

PARTITION_FORMAT = 1


@dataclass(frozen=True)
class Scheme:
    """A partition scheme: how to build its flwr-datasets partitioner from the config and the seed.

    Attributes:
        build: ``(cfg, seed) -> Partitioner`` (a fresh, unassigned flwr-datasets partitioner).
        params: ``PartitionConfig`` fields the scheme reads; recorded in the partition's metadata and
            range-checked against the dataset.
        empty_hint: What to change when a client ends up with no samples.
    """

    build: Callable[[PartitionConfig, int], Any]
    params: tuple[str, ...]
    empty_hint: str

    def __call__(self, cfg: PartitionConfig, seed: int) -> Any:
        return self.build(cfg, seed)


PARTITIONERS: Registry[Scheme] = Registry("partition scheme")


def _register_scheme(name: str, params: tuple[str, ...], empty_hint: str):
    def deco(fn: Callable[[PartitionConfig, int], Any]) -> Callable[[PartitionConfig, int], Any]:
        PARTITIONERS.register(name)(Scheme(fn, params, empty_hint))
        return fn
    return deco


@_register_scheme("iid", ("num_clients",), "use fewer partition.num_clients (or more samples)")
def _iid(cfg: PartitionConfig, seed: int) -> Any:
    from flwr_datasets.partitioner import IidPartitioner  # deferred: flwr-datasets, ~1 s with HF datasets

    return IidPartitioner(num_partitions=cfg.num_clients)  # the seeded shuffle happens in make_partition


@_register_scheme(
    "dirichlet", ("num_clients", "alpha", "min_partition_size"),
    "use fewer partition.num_clients, a larger partition.alpha, or partition.min_partition_size >= 1",
)
def _dirichlet(cfg: PartitionConfig, seed: int) -> Any:
    from flwr_datasets.partitioner import DirichletPartitioner  # deferred: flwr-datasets, ~1 s with HF datasets

    return DirichletPartitioner(
        num_partitions=cfg.num_clients, partition_by="label", alpha=cfg.alpha,
        min_partition_size=cfg.min_partition_size, self_balancing=False, shuffle=True, seed=seed,
    )


@_register_scheme("pathological", ("num_clients", "classes_per_client"),
                  "use fewer partition.num_clients or more partition.classes_per_client")
def _pathological(cfg: PartitionConfig, seed: int) -> Any:
    from flwr_datasets.partitioner import PathologicalPartitioner  # deferred: flwr-datasets, ~1 s with HF datasets

    return PathologicalPartitioner(
        num_partitions=cfg.num_clients, partition_by="label", num_classes_per_partition=cfg.classes_per_client,
        class_assignment_mode="first-deterministic", shuffle=True, seed=seed,
    )


# ----------------------------------------------------------------------------------------------------------


def _canonical_hash(client_indices: list[np.ndarray]) -> str:
    """sha256 over, per client in order, its length and its sorted indices (int64 little-endian)."""
    h = hashlib.sha256()
    for idx in client_indices:
        arr = np.sort(np.asarray(idx, dtype="<i8"))
        h.update(np.int64(len(arr)).astype("<i8").tobytes())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


@dataclass
class Partition:
    """Which train samples each client holds.

    Attributes:
        client_indices: Per client, sorted int64 indices into the train ImageSet.
        histogram: int64 ``[num_clients, num_classes]`` sample counts per class.
        meta: ``scheme``, ``params`` (the config fields the scheme reads), ``seed``, ``dataset``,
            ``num_samples``, ``num_classes`` and, where known, ``classes`` (names indexed by label).
    """

    client_indices: list[np.ndarray]
    histogram: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def num_clients(self) -> int:
        return len(self.client_indices)

    @property
    def sizes(self) -> np.ndarray:
        """Samples per client, int64 ``[num_clients]``."""
        return np.array([len(i) for i in self.client_indices], dtype=np.int64)

    @property
    def hash(self) -> str:
        """First 16 hex digits of the sha256 of the canonical indices (same partition <=> same hash)."""
        return _canonical_hash(self.client_indices)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON (``format``, ``meta``, ``hash``, ``clients``, ``histogram``) atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": PARTITION_FORMAT, "meta": self.meta, "hash": self.hash,
            "clients": [np.asarray(i).tolist() for i in self.client_indices],
            "histogram": np.asarray(self.histogram).tolist(),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(doc, separators=(",", ":")))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Partition":
        """Read a saved partition and verify its hash.

        Raises:
            DatasetError: the file is missing, not a partition file, or its indices do not match its hash.
        """
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
            clients = [np.asarray(c, dtype=np.int64) for c in doc["clients"]]
            histogram = np.asarray(doc["histogram"], dtype=np.int64)
            stored, meta = doc["hash"], doc["meta"]
        except FileNotFoundError:
            raise DatasetError(f"partition file {str(path)!r} does not exist") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"partition file {str(path)!r} is not a valid partition ({type(exc).__name__}: "
                               f"{exc})") from None
        part = cls(clients, histogram, meta)
        if part.hash != stored:
            raise DatasetError(f"partition file {str(path)!r}: stored hash {stored} != recomputed {part.hash}; "
                               f"the file was edited or damaged, re-create it")
        if histogram.shape[0] != len(clients):
            raise DatasetError(f"partition file {str(path)!r}: histogram has {histogram.shape[0]} rows for "
                               f"{len(clients)} clients")
        return part


def make_partition(labels: np.ndarray, num_classes: int, cfg: PartitionConfig, seed: int,
                   dataset: str = "", class_names: Sequence[str] | None = None) -> Partition:
    """Partition the train split among ``cfg.num_clients`` clients.

    Args:
        labels: int train labels ``[N]`` in ``[0, num_classes)``.
        num_classes: Number of classes of the dataset (histogram width, range of ``classes_per_client``).
        cfg: Partition section of the run config.
        seed: The run seed (shuffle, Dirichlet draws, class assignment).
        dataset: Dataset name, recorded in the metadata.
        class_names: The dataset's class names, indexed by label (e.g. a ``ClassLabel``'s names), recorded in
            the metadata as ``classes`` so that reports label classes by name; not part of the hash.

    Raises:
        UnknownNameError: unknown scheme. ConfigError: ``classes_per_client`` outside ``[1, num_classes]``.
        BenchmarkError: a client would get no samples, or flwr-datasets cannot satisfy the settings.
    """
    scheme = PARTITIONERS.get(cfg.scheme)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    if "classes_per_client" in scheme.params and not 1 <= cfg.classes_per_client <= num_classes:
        raise ConfigError(
            f"config key 'partition.classes_per_client' must be in [1, {num_classes}] for dataset "
            f"{dataset or '?'!r} ({num_classes} classes), got {cfg.classes_per_client}"
        )
    if cfg.num_clients > n:
        raise BenchmarkError(f"partition: {cfg.num_clients} clients for {n} samples; {scheme.empty_hint}")

    import datasets  # deferred: a training process that only loads a partition never needs it

    table = datasets.Dataset.from_dict({"label": labels, "idx": np.arange(n, dtype=np.int64)})
    partitioner = scheme(cfg, seed)
    partitioner.dataset = table.shuffle(seed=seed)  # as flwr-datasets' FederatedDataset does
    try:
        clients = [np.sort(np.asarray(partitioner.load_partition(i)["idx"], dtype=np.int64))
                   for i in range(cfg.num_clients)]
    except ValueError as exc:  # flwr-datasets reports impossible settings as ValueError
        raise BenchmarkError(f"partition scheme {cfg.scheme!r} failed for {cfg.num_clients} clients on {n} "
                             f"samples: {' '.join(str(exc).split())} ({scheme.empty_hint})") from None

    for i, idx in enumerate(clients):
        if len(idx) == 0:
            raise BenchmarkError(f"partition: client {i} of {cfg.num_clients} got 0 samples (scheme "
                                 f"{cfg.scheme!r}, {n} samples); {scheme.empty_hint}")
    histogram = np.stack([np.bincount(labels[idx], minlength=num_classes) for idx in clients]).astype(np.int64)
    meta = {
        "scheme": cfg.scheme, "params": {k: getattr(cfg, k) for k in scheme.params}, "seed": int(seed),
        "dataset": dataset, "num_samples": int(n), "num_classes": int(num_classes),
    }
    if class_names is not None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        meta["classes"] = [str(c) for c in class_names]
    return Partition(clients, histogram, meta)


def label_entropy(p: Partition) -> float:
    """Mean over clients of the entropy of the client's label distribution, in nats.

    ``log(num_classes)`` for perfectly balanced clients, 0 when every client holds a single class.
    """
    hist = np.asarray(p.histogram, dtype=np.float64)
    totals = hist.sum(axis=1, keepdims=True)
    probs = np.divide(hist, totals, out=np.zeros_like(hist), where=totals > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, -probs * np.log(probs), 0.0)
    return float(terms.sum(axis=1).mean())
