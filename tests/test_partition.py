"""Tests of benchmark.data.partition: flwr-datasets partitioners, hashes, persistence, error messages.

Synthetic labels only (no files but tmp_path); the whole file runs in a few seconds.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from benchmark.config import PartitionConfig
from benchmark.data import PARTITIONERS, Partition, label_entropy, make_partition
from benchmark.errors import BenchmarkError, ConfigError, DatasetError, UnknownNameError

C = 10


def sorted_labels(n_per_class: int = 200, classes: int = C) -> np.ndarray:
    """Labels sorted by class (as the image-per-folder sources were): the worst case for unshuffled IID."""
    return np.repeat(np.arange(classes), n_per_class)


def cfg(scheme: str, **kw) -> PartitionConfig:
    return PartitionConfig(scheme=scheme, **kw)


ALL = [cfg("iid"), cfg("dirichlet", alpha=0.5), cfg("pathological", classes_per_client=2)]


def test_registry_has_the_three_schemes():
    assert PARTITIONERS.names() == ["dirichlet", "iid", "pathological"]
    with pytest.raises(UnknownNameError) as err:
        make_partition(sorted_labels(), C, cfg("shards"), seed=0)
    assert "dirichlet, iid, pathological" in str(err.value)


@pytest.mark.parametrize("pc", ALL, ids=lambda p: p.scheme)
def test_partitions_are_disjoint_sorted_and_cover_the_data(pc):
    labels = sorted_labels()
    p = make_partition(labels, C, pc, seed=0, dataset="synthetic")
    allidx = np.concatenate(p.client_indices)
    assert len(p.client_indices) == pc.num_clients
    assert len(allidx) == len(np.unique(allidx))  # disjoint
    assert all(idx.dtype == np.int64 and np.all(np.diff(idx) > 0) for idx in p.client_indices)
    if pc.scheme != "pathological":  # pathological may leave classes unused when clients < classes
        assert np.array_equal(np.sort(allidx), np.arange(len(labels)))  # cover
    assert p.histogram.shape == (pc.num_clients, C)
    assert np.array_equal(p.histogram.sum(axis=1), p.sizes)
    for idx, row in zip(p.client_indices, p.histogram):
        assert np.array_equal(np.bincount(labels[idx], minlength=C), row)
    assert p.meta["scheme"] == pc.scheme and p.meta["seed"] == 0 and p.meta["num_samples"] == len(labels)
    assert p.meta["dataset"] == "synthetic"


def test_class_names_travel_in_the_file_beside_the_hash(tmp_path):
    """Reports label classes by the names the partition file carries; the names do not change the partition."""
    names = [f"class {k}" for k in range(C)]
    named = make_partition(sorted_labels(), C, ALL[0], seed=0, class_names=names)
    plain = make_partition(sorted_labels(), C, ALL[0], seed=0)
    named.save(tmp_path / "p.json")
    assert Partition.load(tmp_path / "p.json").meta["classes"] == names
    assert named.hash == plain.hash and "classes" not in plain.meta
    with pytest.raises(ValueError, match="class names"):
        make_partition(sorted_labels(), C, ALL[0], seed=0, class_names=names[:-1])


@pytest.mark.parametrize("pc", ALL, ids=lambda p: p.scheme)
def test_same_seed_same_hash_different_seed_different_hash(pc):
    labels = sorted_labels()
    a = make_partition(labels, C, pc, seed=3)
    b = make_partition(labels, C, pc, seed=3)
    c = make_partition(labels, C, pc, seed=4)
    assert a.hash == b.hash and len(a.hash) == 16
    assert all(np.array_equal(x, y) for x, y in zip(a.client_indices, b.client_indices))
    assert a.hash != c.hash


def test_iid_is_shuffled_with_the_seed():
    p = make_partition(sorted_labels(), C, cfg("iid", num_clients=10), seed=0)
    # contiguous shards of class-sorted data would give each client a single class (entropy 0)
    assert label_entropy(p) > 0.95 * math.log(C)
    assert np.all(p.sizes == 200)


def test_smaller_alpha_gives_lower_label_entropy():
    labels = sorted_labels(200)
    ent = {a: label_entropy(make_partition(labels, C, cfg("dirichlet", alpha=a), seed=0)) for a in (0.1, 1.0, 100.0)}
    assert ent[0.1] < ent[1.0] < ent[100.0]
    assert ent[100.0] > 0.95 * math.log(C) and ent[0.1] < 0.6 * math.log(C)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pathological_gives_exactly_k_classes_per_client(k):
    p = make_partition(sorted_labels(), C, cfg("pathological", num_clients=12, classes_per_client=k), seed=0)
    assert np.all((p.histogram > 0).sum(axis=1) == k)
    assert p.meta["params"] == {"num_clients": 12, "classes_per_client": k}


def test_classes_per_client_above_num_classes_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        make_partition(sorted_labels(), C, cfg("pathological", classes_per_client=11), seed=0, dataset="x")
    assert "partition.classes_per_client" in str(err.value) and "[1, 10]" in str(err.value)
    # ignored by schemes that do not read it
    make_partition(sorted_labels(), C, cfg("iid", classes_per_client=11), seed=0)


def test_empty_client_is_an_error_naming_the_client():
    labels = sorted_labels(2)  # 20 samples
    with pytest.raises(BenchmarkError) as err:
        make_partition(labels, C, cfg("dirichlet", num_clients=15, alpha=0.01, min_partition_size=0), seed=0)
    msg = str(err.value)
    assert "client" in msg and "0 samples" in msg and "partition.alpha" in msg
    with pytest.raises(BenchmarkError) as err:
        make_partition(labels, C, cfg("iid", num_clients=25), seed=0)
    assert "num_clients" in str(err.value)


def test_unsatisfiable_min_partition_size_is_a_benchmark_error():
    with pytest.warns(UserWarning):
        with pytest.raises(BenchmarkError) as err:
            make_partition(sorted_labels(5), C, cfg("dirichlet", num_clients=10, alpha=0.05,
                                                    min_partition_size=5), seed=0)
    assert "dirichlet" in str(err.value) and "partition.alpha" in str(err.value)


def test_save_load_roundtrip_and_tamper_detection(tmp_path):
    p = make_partition(sorted_labels(), C, cfg("dirichlet", alpha=0.3), seed=1, dataset="synthetic")
    path = tmp_path / "parts" / "seed1.json"
    p.save(path)
    assert [x.name for x in path.parent.iterdir()] == ["seed1.json"]  # no temp file left behind
    q = Partition.load(path)
    assert q.hash == p.hash and q.meta == p.meta
    assert np.array_equal(q.histogram, p.histogram)
    assert all(np.array_equal(x, y) for x, y in zip(p.client_indices, q.client_indices))
    doc = json.loads(path.read_text())
    doc["clients"][0][0] += 1  # silently edit one index
    path.write_text(json.dumps(doc))
    with pytest.raises(DatasetError) as err:
        Partition.load(path)
    assert "hash" in str(err.value) and str(path) in str(err.value)
    path.write_text("{not json")
    with pytest.raises(DatasetError):
        Partition.load(path)
    with pytest.raises(DatasetError):
        Partition.load(tmp_path / "missing.json")


def test_label_entropy_bounds():
    balanced = Partition([np.arange(10), np.arange(10, 20)], np.array([[1] * 10, [1] * 10]), {})
    single = Partition([np.arange(5), np.arange(5, 9)], np.array([[5] + [0] * 9, [0, 4] + [0] * 8]), {})
    assert label_entropy(balanced) == pytest.approx(math.log(10))
    assert label_entropy(single) == 0.0
