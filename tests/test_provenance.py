"""Data provenance: where a run's decoded data came from is recorded, and it enters the image-cache check and the
backbone cache key. Tested on real images: small CIFAR-10 mirrors cut from the shared mirror's test shard
(``$BENCHMARK_DATA_ROOT/cifar10``), one of them with a single pixel changed."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from benchmark.backbone_cache import cache_key, cache_settings
from benchmark.config import RunConfig
from benchmark.data.cache import data_digest, load_image_data, provenance
from benchmark.errors import DatasetError

SHARED = Path(os.environ.get("BENCHMARK_DATA_ROOT", Path(__file__).resolve().parents[2] / "shared" / "data"))
SOURCE = SHARED / "cifar10" / "test-00000-of-00001.parquet"
pytestmark = pytest.mark.skipif(not SOURCE.is_file(), reason=f"no CIFAR-10 mirror at {SOURCE}")


def _mirror(root: Path, rows: pa.Table, edit: bool = False) -> Path:
    """A CIFAR-10 mirror under ``root`` (the layout the shared mirror has): 40 train rows, 20 test rows; with
    ``edit`` the first training image has one pixel changed (a re-encoded copy of the same images, in small)."""
    folder = root / "cifar10"
    folder.mkdir(parents=True)
    train, test = rows.slice(0, 40), rows.slice(40, 20)
    if edit:
        img = train.column("img").to_pylist()
        pic = Image.open(io.BytesIO(img[0]["bytes"])).convert("RGB")
        pic.putpixel((0, 0), tuple(255 - v for v in pic.getpixel((0, 0))))
        buf = io.BytesIO()
        pic.save(buf, format="PNG")
        img[0] = {"bytes": buf.getvalue(), "path": None}
        train = train.set_column(0, "img", pa.array(img, type=train.schema.field("img").type))
    pq.write_table(train, folder / "train-00000-of-00001.parquet")
    pq.write_table(test, folder / "test-00000-of-00001.parquet")
    return root


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory) -> dict[str, Path]:
    rows = pq.read_table(SOURCE).slice(0, 60)
    base = tmp_path_factory.mktemp("mirrors")
    a = _mirror(base / "a", rows)
    moved = base / "elsewhere" / "a"  # the same files at another path (another machine)
    shutil.copytree(a, moved)
    return {"a": a, "moved": moved, "edited": _mirror(base / "edited", rows, edit=True)}


def _cfg(root: Path, cache: Path) -> RunConfig:
    return RunConfig().replace(**{
        "model.backbone": "vit_tiny_patch16_224", "model.img_size": 16, "model.patch_size": 4,
        "model.embed_dim": 32, "model.depth": 4, "model.num_heads": 2, "model.weights": "scratch",
        "data.dataset": "cifar10", "data.data_root": str(root), "data.cache_dir": str(cache),
        "pretrain.dataset": "cifar10", "pretrain.epochs": 1, "device": "cpu"})


def test_a_changed_data_digest_changes_the_backbone_cache_key(mirrors, tmp_path):
    keys = {name: cache_key(cache_settings(_cfg(root, tmp_path / name))) for name, root in mirrors.items()}
    assert keys["a"] == keys["moved"], "the same data at another path must share the backbone cache entry"
    assert keys["a"] != keys["edited"], "one changed pixel is other data: another backbone"


def test_the_provenance_names_the_source_and_digests_the_decoded_arrays(mirrors, tmp_path):
    cfg = _cfg(mirrors["a"], tmp_path / "c")
    got = provenance(cfg.data, 16)
    assert got["dataset"] == "cifar10" and got["source_kind"] == "mirror"
    assert str(mirrors["a"] / "cifar10") in got["origin"] and got["cache_file"] == "cifar10-16px.safetensors"
    train, test = load_image_data(cfg.data, 16, seed=0)
    arrays = {"train_images": train.images, "train_labels": train.labels, "test_images": test.images,
              "test_labels": test.labels}
    assert got["data_digest"] == data_digest(arrays)
    arrays["train_labels"] = arrays["train_labels"].roll(1)
    assert data_digest(arrays) != got["data_digest"]


def test_a_cache_decoded_from_a_mirror_is_not_read_as_the_hub_copy(mirrors, tmp_path):
    """The same cache folder, and data_root now points where there is no mirror: the data would come from the hub
    (another encoding of CIFAR-10), so the cache is rebuilt, which offline fails with one line, instead of
    silently serving the mirror's images."""
    cache = tmp_path / "c"
    provenance(_cfg(mirrors["a"], cache).data, 16)
    empty = tmp_path / "no-mirrors"
    empty.mkdir()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetError, match="no local mirror"):
        provenance(_cfg(empty, cache).data, 16)
