"""Data: registered datasets (HF hub, local parquet mirrors, package-shipped sets), the uint8 image cache,
per-batch transforms, and federated partitions built with flwr-datasets.

Typical use::

    train, test = load_image_data(cfg.data, img_size=32, seed=cfg.seed)
    part = make_partition(train.labels.numpy(), train.num_classes, cfg.partition, cfg.seed, cfg.data.dataset)
    x = normalize(train.images[part.client_indices[0][:64]].to(device), mean, std)
"""

from benchmark.data.cache import (
    ImageSet,
    build_cache,
    cache_path,
    load_image_data,
    read_cache,
    stratified_subsample,
)
from benchmark.data.datasets import DATASETS, SOURCES, DatasetSpec, class_names, describe, get_spec, load_hf
from benchmark.data.partition import PARTITIONERS, Partition, label_entropy, make_partition
from benchmark.data.transforms import normalize, resize

__all__ = [
    "DATASETS", "SOURCES", "PARTITIONERS", "DatasetSpec", "ImageSet", "Partition",
    "build_cache", "cache_path", "class_names", "describe", "get_spec", "label_entropy", "load_hf",
    "load_image_data", "make_partition", "normalize", "read_cache", "resize", "stratified_subsample",
]
