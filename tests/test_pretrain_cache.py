"""The backbone cache (benchmark/backbone_cache.py) and resumable pre-training (benchmark/pretrain.py).

A tiny config (the smoke profile's ``tiny`` backbone on 256 mnist5k images, 3 epochs) trains in seconds; every
test uses its own cache folder. Training is counted through :func:`benchmark.pretrain._train_epoch` (one call
per epoch trained in this process), never by wall time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from benchmark import backbone_cache, pretrain as pretrain_mod
from benchmark.backbone_cache import cache_key, cache_settings, checkpoint_epoch, default_cache_dir
from benchmark.config import RunConfig
from benchmark.pretrain import StoppedEarly, pretrain

TINY = {"model.backbone": "vit_tiny_patch16_224", "model.img_size": 16, "model.patch_size": 4,
        "model.embed_dim": 32, "model.depth": 4, "model.num_heads": 2, "model.weights": "scratch"}
PRE = {"pretrain.dataset": "mnist5k", "pretrain.epochs": 3, "pretrain.batch_size": 64, "pretrain.lr": 0.002,
       "pretrain.max_train_samples": 256, "pretrain.max_test_samples": 100, "pretrain.augment": False,
       "pretrain.checkpoints": [0.3, 0.6, 1.0]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("decoded")  # the decoded mnist5k, built once for the module


@pytest.fixture
def cfg(data_dir) -> RunConfig:
    return RunConfig().replace(**TINY, **PRE, device="cpu", threads=1, **{"data.cache_dir": str(data_dir)})


@pytest.fixture
def epochs_trained(monkeypatch) -> list[int]:
    """Epoch indices trained in this process (appended by a wrapper of ``_train_epoch``)."""
    seen: list[int] = []
    real = pretrain_mod._train_epoch

    def counting(model, opt, sched, job, epoch, gen, bar):
        seen.append(epoch)
        return real(model, opt, sched, job, epoch, gen, bar)

    monkeypatch.setattr(pretrain_mod, "_train_epoch", counting)
    return seen


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_default_location_follows_env_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("SFPROMPT_BACKBONE_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    monkeypatch.delenv("SFPROMPT_BACKBONE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sfprompt-bench" / "backbones"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "sfprompt-bench" / "backbones"


def test_checkpoint_fractions_round_half_up_to_whole_epochs_at_least_one():
    assert [checkpoint_epoch(f, 10) for f in (0.01, 0.1, 0.25, 0.3, 1.0)] == [1, 1, 3, 3, 10]
    assert [checkpoint_epoch(f, 3) for f in (0.1, 0.3, 0.5, 0.6, 1.0)] == [1, 1, 2, 2, 3]


def test_cache_is_shared_by_results_folders_and_second_call_trains_nothing(cfg, tmp_path, epochs_trained):
    cache = tmp_path / "cache"
    first = pretrain(cfg, tmp_path / "r1/backbones/tiny.safetensors", progress=False, cache_dir=cache)
    assert epochs_trained == [0, 1, 2] and first["cache"]["hit"] is False
    r1 = tmp_path / "r1/backbones/tiny.safetensors"
    os.utime(r1, (1e9, 1e9))
    epochs_trained.clear()
    second = pretrain(cfg, tmp_path / "r2/backbones/tiny.safetensors", progress=False, cache_dir=cache)
    assert epochs_trained == [] and second["cache"]["hit"] is True
    # results folders hold copies: serving r2 leaves r1's mtime (Snakemake's staleness clock) alone
    assert r1.stat().st_mtime == 1e9 and r1.stat().st_nlink == 1
    assert second["cache"]["key"] == first["cache"]["key"] and Path(second["cache"]["dir"]).parent == cache
    assert second["test_accuracy"] == first["test_accuracy"]
    for name in ("tiny.safetensors", "tiny@30.safetensors", "tiny@60.safetensors"):
        assert _same(_weights(tmp_path / "r1/backbones" / name), _weights(tmp_path / "r2/backbones" / name))
    # the checkpoints: distinct epochs of one trajectory, each with its card
    cards = {p: json.loads((tmp_path / f"r2/backbones/tiny@{p}.json").read_text()) for p in (30, 60)}
    assert [(c["epoch"], c["fraction"]) for c in cards.values()] == [(1, 0.3), (2, 0.6)]
    assert all(0 <= c["test_accuracy"] <= 1 and c["cache"]["hit"] for c in cards.values())
    assert not _same(_weights(tmp_path / "r2/backbones/tiny@30.safetensors"),
                     _weights(tmp_path / "r2/backbones/tiny.safetensors"))
    assert not (tmp_path / "r2/backbones/tiny@100.safetensors").exists()  # 100%: tiny.safetensors itself
    entry = Path(first["cache"]["dir"])
    assert {"settings.json", "final.json", "final.safetensors", "ckpt-30.safetensors", "ckpt-30.json",
            "epoch-3.safetensors"} <= {p.name for p in entry.iterdir()}
    assert not (entry / "resume.pt").exists()


def test_adding_a_checkpoint_fraction_evaluates_kept_weights_without_training(cfg, tmp_path, epochs_trained):
    cache = tmp_path / "cache"
    pretrain(cfg, tmp_path / "r1/b.safetensors", progress=False, cache_dir=cache)
    epochs_trained.clear()
    more = cfg.replace(**{"pretrain.checkpoints": [0.3, 0.5, 0.6, 1.0]})
    card = pretrain(more, tmp_path / "r2/b.safetensors", progress=False, cache_dir=cache)
    assert epochs_trained == [] and card["cache"]["hit"] is True
    new = json.loads((tmp_path / "r2/b@50.json").read_text())
    assert new["epoch"] == 2 and new["fraction"] == 0.5
    # the same epoch as the 60% checkpoint saved while training: same weights, same accuracy
    assert _same(_weights(tmp_path / "r2/b@50.safetensors"), _weights(tmp_path / "r1/b@60.safetensors"))
    assert new["test_accuracy"] == json.loads((tmp_path / "r1/b@60.json").read_text())["test_accuracy"]


@pytest.mark.parametrize("change", [
    {"pretrain.lr": 0.001}, {"pretrain.epochs": 2}, {"pretrain.max_train_samples": 128},
    {"pretrain.max_test_samples": 50}, {"pretrain.augment": True}, {"pretrain.weight_decay": 0.1},
    {"pretrain.batch_size": 32}, {"pretrain.dataset": "digits"}, {"seed": 1}, {"model.depth": 3},
    {"model.embed_dim": 16}, {"data.cache_img_size": 28},
])
def test_every_pretraining_setting_is_in_the_key(cfg, change):
    assert cache_key(cache_settings(cfg.replace(**change))) != cache_key(cache_settings(cfg))


@pytest.mark.parametrize("change", [
    {"threads": 2}, {"device": "auto"}, {"keep_freed_memory": False}, {"data.cache_dir": "/elsewhere"},
    {"data.data_root": "/mirrors"}, {"pretrain.checkpoints": [0.5]}, {"train.lr": 0.5}, {"data.dataset": "cifar10"},
])
def test_runtime_keys_locations_and_checkpoints_are_not_in_the_key(cfg, change):
    assert cache_key(cache_settings(cfg.replace(**change))) == cache_key(cache_settings(cfg))


def test_the_code_that_makes_the_backbone_is_in_the_key(cfg, monkeypatch):
    before = cache_key(cache_settings(cfg))
    real = backbone_cache.code_fingerprint
    monkeypatch.setattr(backbone_cache, "code_fingerprint", lambda: {**real(), "pretrain.py": "edited"})
    assert cache_key(cache_settings(cfg)) != before
    assert {"pretrain.py", "models/vit.py"} <= set(real())


def test_a_changed_setting_trains_again(cfg, tmp_path, epochs_trained):
    cache = tmp_path / "cache"
    a = pretrain(cfg, tmp_path / "r1/b.safetensors", progress=False, cache_dir=cache)
    epochs_trained.clear()
    b = pretrain(cfg.replace(**{"pretrain.lr": 0.001}), tmp_path / "r2/b.safetensors", progress=False, cache_dir=cache)
    assert epochs_trained == [0, 1, 2] and b["cache"]["hit"] is False and b["cache"]["key"] != a["cache"]["key"]
    assert not _same(_weights(tmp_path / "r1/b.safetensors"), _weights(tmp_path / "r2/b.safetensors"))


def test_a_killed_pretraining_resumes_bit_identically(cfg, tmp_path, epochs_trained, caplog):
    cfg = cfg.replace(**{"pretrain.augment": True})  # so the augmentation generator's state matters too
    whole = pretrain(cfg, tmp_path / "whole/b.safetensors", progress=False, cache_dir=tmp_path / "c1")
    epochs_trained.clear()
    with pytest.raises(StoppedEarly):
        pretrain(cfg, tmp_path / "killed/b.safetensors", progress=False, cache_dir=tmp_path / "c2",
                 stop_after_epoch=1)
    entry = tmp_path / "c2" / whole["cache"]["key"]
    assert epochs_trained == [0] and (entry / "resume.pt").is_file() and not (entry / "final.json").exists()
    assert not (tmp_path / "killed/b.safetensors").exists()
    epochs_trained.clear()
    with caplog.at_level("WARNING"):
        resumed = pretrain(cfg, tmp_path / "killed/b.safetensors", progress=False, cache_dir=tmp_path / "c2")
    assert epochs_trained == [1, 2] and "resumed pre-training" in caplog.text and "from epoch 1" in caplog.text
    for name in ("b.safetensors", "b@30.safetensors", "b@60.safetensors"):
        assert _same(_weights(tmp_path / "whole" / name), _weights(tmp_path / "killed" / name)), name
    assert resumed["test_accuracy"] == whole["test_accuracy"] and not (entry / "resume.pt").exists()


def test_a_corrupt_entry_is_rebuilt_with_a_warning(cfg, tmp_path, epochs_trained, caplog):
    cache = tmp_path / "cache"
    first = pretrain(cfg, tmp_path / "r1/b.safetensors", progress=False, cache_dir=cache)
    final = Path(first["cache"]["dir"]) / "final.safetensors"
    final.unlink()  # the results' link keeps its own copy of the inode
    final.write_bytes(b"truncated")
    epochs_trained.clear()
    with caplog.at_level("WARNING"):
        again = pretrain(cfg, tmp_path / "r2/b.safetensors", progress=False, cache_dir=cache)
    assert "is corrupt (final.safetensors does not match its recorded sha256): rebuilding" in caplog.text
    assert epochs_trained == [0, 1, 2] and again["cache"]["hit"] is False
    assert _same(_weights(tmp_path / "r1/b.safetensors"), _weights(tmp_path / "r2/b.safetensors"))


def test_an_unreadable_resume_state_starts_afresh(cfg, tmp_path, epochs_trained, caplog):
    with pytest.raises(StoppedEarly):
        pretrain(cfg, tmp_path / "x/b.safetensors", progress=False, cache_dir=tmp_path / "c", stop_after_epoch=1)
    (resume,) = (tmp_path / "c").glob("*/resume.pt")
    resume.write_bytes(b"not a torch file")
    epochs_trained.clear()
    with caplog.at_level("WARNING"):
        card = pretrain(cfg, tmp_path / "x/b.safetensors", progress=False, cache_dir=tmp_path / "c")
    assert epochs_trained == [0, 1, 2] and "training from the start" in caplog.text and card["cache"]["hit"] is False
