"""Bring your own data (issue #15): datasets declared by config, never by code.

Tiny parquet folders (column names the suite has never seen, no test split) and image folders are written to
tmp_path; they are read through the same declaration as the presets (benchmark.data.datasets.DatasetSpec).
Covers auto-detection, the held-out split, image modes and sizes, one-line errors that leave nothing behind,
`train` by a run config alone, and the workflow by a profile alone (one Snakemake run, both folders).
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image as PILImage

import datasets
from benchmark.__main__ import main
from benchmark.config import DataConfig
from benchmark.data.cache import build_cache, cache_path, read_cache
from benchmark.data.datasets import DatasetSpec, load_dataset_spec, spec_from_config
from benchmark.errors import DatasetError
from tests.conftest import BACKGROUND, Background

CLASSES = ["oak", "elm", "yew"]
TINY_MODEL = {"backbone": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 4,
              "num_heads": 2, "prompt_len": 2}


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    """No network; HF's parquet and imagefolder conversions go to a temporary cache (also for subprocesses)."""
    import huggingface_hub.constants

    hf_cache = tmp_path_factory.mktemp("hf_cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(hf_cache))
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hf_cache)
    monkeypatch.delenv("BENCHMARK_DATA_ROOT", raising=False)


def _image(i: int) -> PILImage.Image:
    """Row i: a mix of grayscale, RGBA and RGB images of three sizes (what a user's data may hold)."""
    rng = np.random.default_rng(i)
    size = (12, 12) if i % 3 == 0 else (20, 14) if i % 3 == 1 else (9, 9)
    mode = ("L", "RGBA", "RGB")[i % 3 if i % 2 else (i + 1) % 3]
    shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], len(mode))
    return PILImage.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8), mode=mode)


def write_parquet(folder: Path, per_class: int = 10, classes=CLASSES, splits=("train",), shards: int = 1,
                  label_feature=None, labels=None, extra_image: bool = False, corrupt: int | None = None,
                  row_ids: bool = True) -> Path:
    """A parquet folder in the hub's layout, columns ``note`` (string), ``pixels`` (Image), ``kind`` (ClassLabel)
    and, unless ``row_ids`` is False, the distractor ``row_id`` (int64): the label is the ClassLabel, not it."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        n = per_class * len(classes)
        lab = list(labels if labels is not None else np.arange(n) % len(classes))
        images = [_image(i) for i in range(len(lab))]
        cols = {"note": [f"row {i}" for i in range(len(lab))], "pixels": images, "kind": lab}
        feats = {"note": datasets.Value("string"), "pixels": datasets.Image(),
                 "kind": label_feature or datasets.ClassLabel(names=list(classes))}
        if row_ids:
            cols["row_id"], feats["row_id"] = list(range(len(lab))), datasets.Value("int64")
        if extra_image:
            cols["thumb"], feats["thumb"] = images, datasets.Image()
        ds = datasets.Dataset.from_dict(cols, features=datasets.Features(feats))
        if corrupt is not None:  # raw cells: one row's bytes are not an image
            cells = [{"bytes": b"\x89PNG but not really", "path": None} if i == corrupt else
                     {"bytes": _png(images[i]), "path": None} for i in range(len(lab))]
            ds = ds.cast_column("pixels", datasets.Image(decode=False)).remove_columns("pixels").add_column(
                "pixels", cells, feature=datasets.Image(decode=False)).cast_column("pixels", datasets.Image())
        bounds = np.linspace(0, len(ds), shards + 1).astype(int)
        for k in range(shards):
            ds.select(range(bounds[k], bounds[k + 1])).to_parquet(str(folder / f"{split}-{k:05d}-of-{shards:05d}.parquet"))
    return folder


def _png(img: PILImage.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_image_folder(folder: Path, per_class: int = 10, classes=CLASSES) -> Path:
    """One sub-folder per class, PNG and JPEG files of mixed modes and sizes."""
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = _image(c * per_class + i)
            if i % 2 and img.mode != "RGBA":
                img.save(folder / name / f"{i}.jpg")
            else:
                img.save(folder / name / f"{i}.png")
    return folder


def declared(folder: Path, scheme: str = "parquet", **kw) -> DatasetSpec:
    return DatasetSpec("mine", f"{scheme}:{folder}", **kw)


# ----------------------------------------------------------------------------------------------------------
# the declaration: columns, splits, classes


def test_parquet_folder_columns_are_detected_and_a_test_split_is_held_out(tmp_path):
    folder = write_parquet(tmp_path / "leaves")
    loaded = load_dataset_spec(declared(folder))
    train, test = loaded.splits["train"], loaded.splits["test"]
    assert train.column_names == test.column_names == ["image", "label"]
    assert loaded.classes == CLASSES and train.features["label"].names == CLASSES
    assert "image='pixels'" in loaded.origin and "label='kind'" in loaded.origin
    # 20% of 30 rows held out, 2 per class (stratified), the same draw every time
    assert (len(train), len(test)) == (24, 6)
    assert np.bincount(test["label"], minlength=3).tolist() == [2, 2, 2]
    again = load_dataset_spec(declared(folder))
    assert again.splits["test"]["label"] == test["label"]
    # a declared test split is used as is
    write_parquet(folder, per_class=2, splits=("test",))
    assert len(load_dataset_spec(declared(folder)).splits["test"]) == 6


def test_image_folder_reads_class_names_from_subfolders(tmp_path):
    folder = write_image_folder(tmp_path / "pets", classes=["cat", "dog", "emu"])
    loaded = load_dataset_spec(declared(folder, "imagefolder"))
    assert loaded.classes == ["cat", "dog", "emu"]
    assert len(loaded.splits["train"]) + len(loaded.splits["test"]) == 30 and len(loaded.splits["test"]) == 6


def test_mixed_modes_and_sizes_are_converted_and_resized_once(tmp_path):
    folder = write_parquet(tmp_path / "leaves")
    train, test = read_cache(build_cache(declared(folder), 8, None, tmp_path / "cache"))
    assert train.images.shape == (24, 3, 8, 8) and test.images.shape == (6, 3, 8, 8)
    assert train.classes == CLASSES
    # grayscale rows become three equal channels; RGB and RGBA rows (random pixels) do not
    equal = (train.images[:, 0] == train.images[:, 1]).flatten(1).all(1) & (
        train.images[:, 1] == train.images[:, 2]).flatten(1).all(1)
    assert 0 < int(equal.sum()) < len(train)


def test_ambiguous_image_columns_list_the_candidates_until_one_is_named(tmp_path):
    folder = write_parquet(tmp_path / "two", extra_image=True)
    with pytest.raises(DatasetError) as err:
        load_dataset_spec(declared(folder))
    msg = str(err.value)
    assert "\n" not in msg and "several candidates: pixels, thumb" in msg and "data.image_column" in msg
    assert load_dataset_spec(declared(folder, image_column="thumb")).classes == CLASSES


def test_plain_integer_labels_warn_and_count_classes_from_the_data(tmp_path):
    folder = write_parquet(tmp_path / "ints", label_feature=datasets.Value("int64"), row_ids=False)
    with pytest.warns(UserWarning, match=r"'kind' holds plain integers.*3 classes"):
        loaded = load_dataset_spec(declared(folder))
    assert loaded.classes == ["0", "1", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset_spec(declared(folder, num_classes=4)).classes == ["0", "1", "2", "3"]


def test_run_config_declares_a_dataset_and_presets_are_the_same_mechanism(tmp_path):
    spec = spec_from_config(DataConfig(dataset="leaves", source=f"parquet:{tmp_path}", label_column="kind"))
    assert (spec.name, spec.scheme, spec.label_column, spec.test_split) == ("leaves", "parquet", "kind", None)
    preset = spec_from_config(DataConfig(dataset="cifar10"))
    assert (preset.scheme, preset.image_column, preset.test_split) == ("hf", "img", "test")
    assert spec_from_config(DataConfig(dataset="cifar10", max_train_samples=5)) is preset
    assert spec_from_config(DataConfig(dataset="cifar10", test_fraction=0.5)).test_fraction == 0.5


def test_cache_is_rebuilt_when_the_declaration_changes(tmp_path):
    folder = write_parquet(tmp_path / "leaves")
    first = read_cache(build_cache(declared(folder), 8, None, tmp_path / "cache"))[1]
    second = read_cache(build_cache(declared(folder, test_fraction=0.5), 8, None, tmp_path / "cache"))[1]
    assert (len(first), len(second)) == (6, 15)


# ----------------------------------------------------------------------------------------------------------
# bad input: one line each, nothing written


def _mk(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _bad_string_labels(tmp_path: Path) -> dict:
    folder = write_parquet(tmp_path / "s", label_feature=datasets.Value("string"),
                           labels=[CLASSES[i % 3] for i in range(30)])
    return {"source": f"parquet:{folder}", "label_column": "kind"}


def _bad_test_classes(tmp_path: Path) -> dict:
    folder = write_parquet(tmp_path / "t", labels=[i % 2 for i in range(30)])
    write_parquet(folder, splits=("test",), per_class=2)
    return {"source": f"parquet:{folder}"}


def _bad_corrupt_image(tmp_path: Path) -> dict:
    return {"source": f"parquet:{write_parquet(tmp_path / 'c', shards=2, corrupt=22)}"}


BAD = [
    ("no_parquet", lambda p: {"source": f"parquet:{_mk(p / 'empty')}"},
     r"folder '.*empty' holds no parquet files"),
    ("no_images", lambda p: {"source": f"imagefolder:{_mk(p / 'empty')}"},
     r"folder '.*empty' holds no images"),
    ("missing_folder", lambda p: {"source": f"imagefolder:{p / 'nowhere'}"}, r"folder '.*nowhere' does not exist"),
    ("string_labels", _bad_string_labels, r"label column 'kind' holds string values \(e.g. \['oak', 'elm', 'yew'\]\)"),
    ("test_classes_absent_from_train", _bad_test_classes,
     r"the test split has 1 class\(es\) absent from the train split: yew"),
    ("num_classes_disagrees", lambda p: {"source": f"parquet:{write_parquet(p / 'n')}", "num_classes": 5},
     r"data.num_classes is 5 but label column 'kind' is a ClassLabel with 3 classes"),
    ("corrupt_image", _bad_corrupt_image,
     r"cannot decode the image of dataset 'mine' split 'train' row 22 \(file .*train-00001-of-00002.parquet, row 7\)"),
    ("ambiguous_columns", lambda p: {"source": f"parquet:{write_parquet(p / 'a', extra_image=True)}"},
     r"cannot tell the image column \(several candidates: pixels, thumb"),
    ("unknown_column", lambda p: {"source": f"parquet:{write_parquet(p / 'u')}", "label_column": "labels"},
     r"label column 'labels' not found; columns: note \(string\), pixels \(Image\), kind \(ClassLabel\), "
     r"row_id \(int64\)"),
    ("bad_scheme", lambda p: {"source": "s3://bucket/x"}, r"'data.source' of dataset 'mine' must be hf:OWNER/NAME"),
    ("missing_split", lambda p: {"source": f"parquet:{write_parquet(p / 'm')}", "test_split": "validation"},
     r"no 'validation' split \(splits: train\); set data.test_split"),
]


@pytest.mark.parametrize("case_id,make,pattern", BAD, ids=[c[0] for c in BAD])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, capsys, case_id, make, pattern):
    data = make(_mk(tmp_path / "src"))
    results = tmp_path / "results"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "threads": 1, "data": {"dataset": "mine", "cache_dir": str(results / "cache"), **data},
        "partition": {"scheme": "iid", "num_clients": 2}, "model": TINY_MODEL,
        "train": {"method": "fedavg", "rounds": 1}}))
    capsys.readouterr()  # drop what writing the source printed
    code = main(["train", "--config", str(cfg), "--out", str(results / "run"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(pattern, err[0]), err[0]
    assert not results.exists(), list(results.rglob("*"))


def test_very_small_classes_meet_the_partitioners_own_errors(tmp_path, capsys):
    """A class of 3 images among 24 cannot give 4 Dirichlet clients 8 samples each: the partitioner's
    ``min_partition_size`` error, one line with its hint (the cache, built from valid data, may stay)."""
    folder = write_parquet(tmp_path / "src", labels=[0] * 15 + [1] * 12 + [2] * 3)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "threads": 1, "data": {"dataset": "mine", "source": f"parquet:{folder}", "cache_dir": str(tmp_path / "c")},
        "partition": {"scheme": "dirichlet", "num_clients": 4, "alpha": 0.1, "min_partition_size": 8},
        "model": TINY_MODEL, "train": {"method": "fedavg", "rounds": 1}}))
    capsys.readouterr()
    assert main(["partition", "--config", str(cfg), "--out", str(tmp_path / "p.json"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "partition scheme 'dirichlet' failed for 4 clients on 24 samples" in err[0], err
    assert "partition.min_partition_size" in err[0] and not (tmp_path / "p.json").exists()


# ----------------------------------------------------------------------------------------------------------
# done when: train by a run config alone, on a parquet folder and on an image folder


@pytest.mark.parametrize("scheme", ["parquet", "imagefolder"])
def test_train_runs_on_a_declared_dataset_by_run_config_alone(tmp_path, capsys, scheme):
    folder = (write_parquet(tmp_path / "src") if scheme == "parquet"
              else write_image_folder(tmp_path / "src", classes=CLASSES))
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({
        "threads": 1, "device": "cpu",
        "data": {"dataset": "my_leaves", "source": f"{scheme}:{folder}", "cache_dir": str(tmp_path / "cache")},
        "partition": {"scheme": "iid", "num_clients": 2}, "model": TINY_MODEL,
        "train": {"method": "fedavg", "rounds": 1, "batch_size": 8}}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "-q"]) == 0
    metrics = (tmp_path / "run" / "metrics.csv").read_text()
    assert "my_leaves" in metrics
    train, test = read_cache(cache_path(tmp_path / "cache", "my_leaves", 16))
    names = CLASSES if scheme == "parquet" else sorted(CLASSES)  # imagefolder sorts its class folders
    assert train.classes == names and (len(train), len(test)) == (24, 6)
    assert main(["data", "--dataset", f"{scheme}:{folder}"]) == 0
    out = capsys.readouterr().out
    assert "src:" in out and f"classes (3): {', '.join(names)}" in out and "train: 24 images   test: 6 images" in out


# ----------------------------------------------------------------------------------------------------------
# done when: the workflow on declared datasets by a profile alone (one Snakemake run for both folders)


def _declared_profile(base: Path) -> tuple[Path, dict]:
    """The smoke profile's settings with a `datasets:` override: a parquet folder (odd columns, no test split) and an
    image folder, one partition, two methods, a scratch backbone; results in ``base/results``."""
    from tests.test_workflow import CONFIGS

    leaves = write_parquet(base / "data" / "leaves", per_class=12)
    pets = write_image_folder(base / "data" / "pets", per_class=12, classes=["cat", "dog", "emu"])
    raw = yaml.safe_load(CONFIGS["smoke"].read_text())
    raw.update(results=str(base / "results"), ablations={}, sensitivity={}, methods=["fedavg", "sfprompt"],
               partitions={"iid": {"scheme": "iid"}},
               datasets={"leaves": {"source": f"parquet:{leaves}", "max_train_samples": 24},
                         "pets": {"source": f"imagefolder:{pets}"}})
    raw["run"]["partition"]["num_clients"] = 2
    raw["run"]["train"]["rounds"] = 1
    raw["backbones"]["tiny"].update(weights="scratch", pretrain={})
    raw["accounting"]["splits"] = [[0, 0], [1, 1]]
    raw.update(seeds=[0], references={})
    for section in ("strength", "tuning"):  # a scratch backbone has no trajectory; tuning is tested elsewhere
        raw.pop(section, None)
    raw["privacy"].update(dataset="leaves", partition="iid", images=4, aux_samples=8, methods=["sfprompt"])
    profile = base / "profile.yaml"
    profile.write_text(yaml.safe_dump(raw))
    return profile, raw


def start_declared_workflow() -> None:
    """Start the declared-data workflow in the background (tests/conftest.py's ``Background``, when collection
    ends), offline, with its own HF cache; ``declared_workflow`` waits for it."""
    if "declared" in BACKGROUND:
        return
    from tests.test_workflow import snakemake_cmd

    base = Path(tempfile.mkdtemp(prefix="sfprompt-declared-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    profile, raw = _declared_profile(base)
    work = base / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "BENCHMARK_DATA_ROOT"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(base / "hf_cache"))
    run = Background("the declared-data workflow", snakemake_cmd("all", "--cores", "2", "--configfile", str(profile),
                                                                 workdir=work), base / "snakemake.out", env=env)
    run.base, run.profile, run.raw, run.work = base, profile, raw, work
    BACKGROUND["declared"] = run


@pytest.fixture(scope="module")
def declared_workflow() -> Background:
    """The declared-data workflow, finished: ``base`` (its folder; results in ``base/results``), ``profile``,
    ``raw`` (the profile as a dict) and ``work`` (Snakemake's --directory)."""
    start_declared_workflow()
    BACKGROUND["declared"].wait()
    return BACKGROUND["declared"]


def test_workflow_runs_declared_datasets_by_profile_alone(declared_workflow):
    """The profile of :func:`_declared_profile`, run end to end. Then: nothing left to do, and a changed
    declaration re-decodes that dataset (and reruns what reads it) only."""
    from tests.test_workflow import job_counts, snakemake

    raw, profile, work = declared_workflow.raw, declared_workflow.profile, declared_workflow.work
    results = declared_workflow.base / "results"
    accuracy = (results / "tables" / "accuracy.csv").read_text()
    assert "leaves" in accuracy and "pets" in accuracy
    for name, classes in (("leaves", CLASSES), ("pets", ["cat", "dog", "emu"])):
        train, test = read_cache(results / "cache" / f"{name}-16px.safetensors")
        assert train.classes == classes and len(test) == 8  # ceil(20% of 36) held out
        assert (results / "runs" / "tiny" / name / "iid" / "sfprompt" / "seed0" / "metrics.csv").is_file()
    assert (results / "figures" / "accuracy_vs_round.png").is_file() and (results / "manifest.json").is_file()

    assert job_counts(snakemake("all", "-n", "--configfile", str(profile), workdir=work).log) == {}
    raw["datasets"]["pets"]["test_fraction"] = 0.25
    profile.write_text(yaml.safe_dump(raw))
    planned = job_counts(snakemake("all", "-n", "--configfile", str(profile), workdir=work).log)
    assert planned["cache"] == 1 and planned["partition"] == 1 and planned["train"] == 2, planned
