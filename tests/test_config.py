"""Config loading: precedence, freezing, round trips, hashes; and the small shared pieces."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from benchmark import seeding
from benchmark.config import RunConfig, from_dict, load_config, parse_overrides
from benchmark.errors import BenchmarkError, ConfigError
from benchmark.federation.aggregation import WeightedAverage


def test_defaults_yaml_overrides_precedence(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"rounds": 7, "lr": 0.5}, "seed": 3}))
    cfg = load_config(path, ["train.rounds=9", "model.prompt_len=0"])
    assert cfg.train.rounds == 9  # CLI beats YAML
    assert cfg.train.lr == 0.5  # YAML beats default
    assert cfg.model.prompt_len == 0 and cfg.seed == 3
    assert cfg.train.batch_size == RunConfig().train.batch_size  # default


def test_config_is_frozen_and_round_trips():
    cfg = from_dict({"train": {"rounds": 2}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.rounds = 3  # type: ignore[misc]
    again = from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg and again.hash() == cfg.hash()
    assert cfg.replace(**{"train.rounds": 3}).hash() != cfg.hash()


def test_ints_are_accepted_for_floats_and_null_for_optionals():
    cfg = from_dict({"train": {"lr": 1, "grad_clip": None}, "data": {"max_train_samples": None}})
    assert isinstance(cfg.train.lr, float) and cfg.train.grad_clip is None


def test_override_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_overrides(["train.rounds"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.yaml")
    path = tmp_path / "c.yaml"
    path.write_text("seed: 0\n")
    with pytest.raises(ConfigError, match="'seed.x': 'seed' is not a section"):
        load_config(path, {"seed.x": 1})


def test_seed_streams_are_independent_and_stable():
    assert seeding.seed_for(0, "init") == seeding.seed_for(0, "init")
    assert seeding.seed_for(0, "init") != seeding.seed_for(1, "init")
    assert seeding.seed_for(0, "batches", 1, 2) != seeding.seed_for(0, "batches", 2, 1)


def test_weighted_average_is_fedavg():
    avg = WeightedAverage()
    avg.add({"w": torch.tensor([1.0, 2.0])}, 1.0)
    avg.add({"w": torch.tensor([3.0, 6.0])}, 3.0)
    torch.testing.assert_close(avg.result()["w"], torch.tensor([2.5, 5.0]))
    with pytest.raises(BenchmarkError):
        WeightedAverage().result()
    with pytest.raises(BenchmarkError):
        avg.add({"w": torch.zeros(2)}, 0.0)
