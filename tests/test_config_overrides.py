"""The override language (benchmark.overrides) and the split-depth check: one parser of method overrides for
``--method-set``, ``benchmark.perf --methods`` and ``system calibrate``; dotted and nested dicts; YAML scalars."""

from __future__ import annotations

import pytest

from benchmark.config import check_split_depth
from benchmark.errors import ConfigError
from benchmark.overrides import flatten, method_sets, parse_method_override, parse_overrides, set_args, unflatten, yaml_scalar


@pytest.mark.parametrize("spec, expected", [
    ("sfprompt", ("sfprompt", {})),
    ("sfprompt:", ("sfprompt", {})),
    ("sfprompt:method_params.keep_ratio=1.0,model.prompt_len=0",
     ("sfprompt", {"method_params.keep_ratio": 1.0, "model.prompt_len": 0})),
    ("sfprompt.keep_ratio=0.25", ("sfprompt", {"method_params.keep_ratio": 0.25})),
    (" sfprompt.keep_ratio = 0.25", ("sfprompt", {"method_params.keep_ratio": 0.25})),
    ("fedavg:train.lr=1.0e-3", ("fedavg", {"train.lr": 1e-3})),
])
def test_one_parser_reads_both_spellings_of_a_method_override(spec, expected):
    assert parse_method_override(spec) == expected


def test_method_sets_group_each_methods_own_parameters():
    got = method_sets(["sfprompt.keep_ratio=0.25", "sfprompt.el2n_timing=after_local_loss", "sfl_v1.smashed_noise_sigma=0.5",
                       "sfprompt:method_params.keep_ratio=0.5"])  # the colon spelling means the same; the last wins
    assert got == {"sfprompt": {"keep_ratio": 0.5, "el2n_timing": "after_local_loss"},
                   "sfl_v1": {"smashed_noise_sigma": 0.5}}


@pytest.mark.parametrize("item, message", [
    ("keep_ratio=0.25", r"'keep_ratio=0.25' must look like METHOD.KEY=VALUE"),
    ("sfprompt.keep_ratio", r"'sfprompt.keep_ratio' must look like METHOD.KEY=VALUE"),
    ("sfprompt.=1", r"must look like METHOD.KEY=VALUE"),
    ("sfprompt:model.prompt_len=0", r"sets 'model.prompt_len'; it sets a method's own parameters only"),
])
def test_bad_method_sets_are_one_line_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        method_sets([item])


def test_a_variant_override_without_a_value_is_an_error():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_method_override("sfprompt:model.prompt_len")


def test_flatten_and_unflatten_are_inverse():
    tree = {"train": {"lr": 0.1, "sched": {"warmup": 2}}, "seed": 0, "method_params": {"keep_ratio": 0.5}}
    flat = {"train.lr": 0.1, "train.sched.warmup": 2, "seed": 0, "method_params.keep_ratio": 0.5}
    assert flatten(tree) == flat and list(flatten(tree)) == list(flat)  # depth-first, in the tree's order
    assert unflatten(flat) == tree
    assert flatten({"a": {}, "b": 1}, "p.") == {"p.b": 1}


@pytest.mark.parametrize("value, text", [(1e-5, "1.0e-05"), (1e20, "1.0e+20"), (0.1, "0.1"), (2.5e-7, "2.5e-07"),
                                         (7, "7"), (True, "true"), (None, "null"), ("timm:augreg", "timm:augreg"),
                                         ("true", '"true"'), ("", '""'), (" x", '" x"'), ("1", '"1"')])
def test_yaml_scalar_reads_back_as_the_value(value, text):
    assert yaml_scalar(value) == text
    assert parse_overrides([f"k={yaml_scalar(value)}"])["k"] == value
    assert set_args({"k": value, "a.b": 1}).startswith("--set a.b=1 --set ")


def test_yaml_scalar_keeps_values_that_compare_equal_apart():
    """1, 1.0 and True are equal (and hash equal) in Python but three different --set values: the remembered
    texts are keyed by type too, whatever order they are asked in."""
    for order in ([1, 1.0, True, 0, 0.0, False], [True, 1.0, 1, False, 0.0, 0]):
        texts = {(type(v), v): yaml_scalar(v) for v in order}
        assert texts == {(int, 1): "1", (float, 1.0): "1.0", (bool, True): "true",
                         (int, 0): "0", (float, 0.0): "0.0", (bool, False): "false"}
    assert yaml_scalar([1, 2]) == "[1, 2]"  # unhashable: not remembered, still written


def test_split_depth_leaves_the_server_a_block():
    check_split_depth(1, 2, 4)
    for head, tail in ((2, 2), (-1, 0), (0, -1)):
        with pytest.raises(ConfigError, match=rf"workflow x: model.head_blocks \+ model.tail_blocks must be below the "
                                              rf"backbone depth 4 \(the server body needs a block\), got {head} \+ {tail}"):
            check_split_depth(head, tail, 4, where="workflow x: ")
