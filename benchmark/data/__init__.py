"""Data: dataset declarations and presets (HF hub, local parquet mirrors, parquet and image folders,
package-shipped sets), the uint8 image cache, the rows a run reads (subsamples, the validation hold-out),
per-batch transforms, and federated partitions built with flwr-datasets.

Typical use::

    train, test = load_image_data(cfg.data, img_size=32, seed=cfg.seed)
    part = make_partition(train.labels.numpy(), train.num_classes, cfg.partition, cfg.seed, cfg.data.dataset)
    x = normalize(train.images[part.client_indices[0][:64]].to(device), mean, std)
"""

from __future__ import annotations

import importlib
from typing import Any

# Names -> the submodule defining them, imported on first use (PEP 562), so that importing one submodule
# (e.g. benchmark.data.federated in a training run) does not import Hugging Face ``datasets`` and
# flwr-datasets (about 1 s per process) through this package's __init__.
_EXPORTS = {
    "ImageSet": "cache", "build_cache": "cache", "cache_path": "cache", "load_image_data": "cache",
    "read_cache": "cache",
    "DATASETS": "datasets", "SOURCES": "datasets", "DatasetSpec": "datasets", "class_names": "datasets",
    "describe": "datasets", "get_spec": "datasets", "load_hf": "datasets",
    "LoadedDataset": "datasets", "load_dataset_spec": "datasets", "spec_from_config": "datasets",
    "select": "sampling", "stratified_subsample": "sampling", "validation_split": "sampling",
    "PARTITIONERS": "partition", "Partition": "partition", "label_entropy": "partition",
    "make_partition": "partition",
    "normalize": "transforms", "resize": "transforms",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_EXPORTS))


__all__ = [
    "DATASETS", "SOURCES", "PARTITIONERS", "DatasetSpec", "ImageSet", "LoadedDataset", "Partition",
    "build_cache", "cache_path", "class_names", "describe", "get_spec", "label_entropy", "load_hf",
    "load_dataset_spec", "load_image_data", "make_partition", "normalize", "read_cache", "resize",
    "select", "spec_from_config", "stratified_subsample", "validation_split",
]
