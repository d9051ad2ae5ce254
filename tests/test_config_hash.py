"""The run hash is pinned: run folders, resumable checkpoints and tuning records carry it, so a refactor of
:meth:`benchmark.config.RunConfig.hash` must reproduce these values to the digit.

The settings are the smoke profile's runs as the workflow resolved them at commit 658ac84 (``config/smoke.yaml``,
backbone ``tiny``, dataset ``digits``, partition ``iid``); the hashes were computed there, before the hash's
exemption rules were gathered into one table."""

from __future__ import annotations

import pytest

from benchmark.config import RunConfig

SMOKE = {"data.cache_dir": "results/smoke/cache", "data.dataset": "digits", "data.max_test_samples": 200,
         "data.max_train_samples": 800, "device": "cpu", "model.depth": 4, "model.embed_dim": 32, "model.img_size": 16,
         "model.num_heads": 2, "model.patch_size": 4, "model.prompt_len": 4,
         "model.weights": "file:results/smoke/backbones/tiny.safetensors", "partition.num_clients": 4,
         "train.eval_batch_size": 200, "train.lr": 0.03, "train.rounds": 3}
SFPROMPT = {**SMOKE, "train.method": "sfprompt", "method_params.keep_ratio": 0.5}


@pytest.mark.parametrize("settings, expected", [
    ({}, "77110f8e436b"),  # RunConfig's defaults
    (SFPROMPT, "c61f3fbcd5f8"),  # smoke sfprompt, seed 0
    ({**SMOKE, "train.method": "sfl_v1", "method_params.smashed_noise_sigma": 0.25}, "5c1f79193cb8"),  # sfl_v1-noise0.25
    ({**SFPROMPT, "method_params.smashed_noise_sigma": 0.25}, "c189a2c009ae"),  # sfprompt-noise0.25
    ({**SMOKE, "train.method": "fedavg", "seed": 1,  # strength point fedavg@30, seed 1
      "model.weights": "file:results/smoke/backbones/tiny@30.safetensors"}, "e9441439472d"),
    ({**SFPROMPT, "train.interim_eval_samples": 50}, "d107e4b58f93"),  # exempt keys off their neutral value count
    ({**SFPROMPT, "train.client_eval": False}, "2bfaedd2be71"),
    ({**SFPROMPT, "data.validation_fraction": 0.2}, "a8039d6adbd6"),
])
def test_run_hash_is_pinned(settings, expected):
    assert RunConfig().replace(**settings).hash() == expected


@pytest.mark.parametrize("exempt", [
    {"threads": 2, "device": "cuda:1", "keep_freed_memory": False},  # runtime: speed, never numbers
    {"pretrain.checkpoints": [0.3, 1.0]},  # which points of one trajectory are saved
    {"train.interim_eval_samples": None},  # keys added later, at the value that reproduces the runs before them
    {"train.client_eval": True},
    {"method_params.smashed_noise_sigma": 0.0},
])
def test_exempt_settings_leave_the_hash_unchanged(exempt):
    assert RunConfig().replace(**{**SFPROMPT, **exempt}).hash() == "c61f3fbcd5f8"
