"""Bad input gets one clear line naming the key or file and what is allowed, and leaves nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmark.__main__ import main

ROOT = Path(__file__).resolve().parents[1]

GOOD = {
    "seed": 0,
    "threads": 1,
    "data": {"dataset": "digits", "max_train_samples": 200, "max_test_samples": 50},
    "partition": {"scheme": "iid", "num_clients": 2},
    "model": {"backbone": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 4,
              "num_heads": 2, "prompt_len": 2},
    "train": {"method": "sfprompt", "rounds": 1},
}

# (id, dotted key -> value, or a raw YAML text, and a regex the one error line must match)
CASES = [
    ("unknown_top_key", {"seeds": 3}, r"unknown config key 'seeds'; valid keys in top level: seed, device"),
    ("unknown_nested_key", {"train.roundz": 3}, r"unknown config key 'train.roundz'; valid keys in train: .*rounds"),
    ("wrong_type_int", {"train.rounds": "ten"}, r"'train.rounds' must be int, got 'ten'"),
    ("wrong_type_float", {"train.lr": [0.1]}, r"'train.lr' must be float"),
    ("wrong_type_bool", {"method_params.prompt_grad_via_server": "yes"},
     r"'method_params.prompt_grad_via_server' must be bool"),
    ("unknown_method_param", {"method_params.keepratio": 0.5},
     r"unknown config key 'method_params.keepratio'; valid keys in method_params: .*\bkeep_ratio\b"),
    ("method_params_not_mapping", {"method_params": 3}, r"'method_params' must be a mapping"),
    ("bad_el2n_timing", {"method_params.el2n_timing": "later"},
     r"'method_params.el2n_timing' must be one of before_local_loss, after_local_loss, local_loss_pass"),
    ("section_not_mapping", {"train": 5}, r"section 'train' must be a mapping"),
    ("unknown_method", {"train.method": "fedsgd"}, r"unknown method 'fedsgd'; valid: fedavg, fedprompt, linear_probe, sfl_v1"),
    ("unknown_dataset", {"data.dataset": "nosuch"}, r"unknown dataset 'nosuch'; valid: .*cifar10.*digits"),
    ("unknown_partition", {"partition.scheme": "shards"}, r"'partition.scheme' must be one of iid, dirichlet"),
    ("unknown_backbone", {"model.backbone": "vit_nope"}, r"unknown backbone 'vit_nope' \(config key model.backbone\)"),
    ("not_a_vit", {"model.backbone": "resnet18"}, r"'resnet18' is a ResNet, not a timm VisionTransformer"),
    ("zero_clients", {"partition.num_clients": 0}, r"'partition.num_clients' must be >= 1, got 0"),
    ("negative_clients", {"partition.num_clients": -3}, r"'partition.num_clients' must be >= 1, got -3"),
    ("participation_zero", {"train.participation": 0}, r"'train.participation' must be in \(0, 1\]"),
    ("participation_big", {"train.participation": 1.5}, r"'train.participation' must be in \(0, 1\], got 1.5"),
    ("keep_ratio_zero", {"method_params.keep_ratio": 0}, r"'method_params.keep_ratio' must be in \(0, 1\], got 0"),
    ("keep_ratio_big", {"method_params.keep_ratio": 1.2}, r"'method_params.keep_ratio' must be in \(0, 1\]"),
    ("alpha_zero", {"partition.scheme": "dirichlet", "partition.alpha": 0}, r"'partition.alpha' must be > 0"),
    ("alpha_negative", {"partition.alpha": -1.0}, r"'partition.alpha' must be > 0, got -1.0"),
    ("too_many_classes", {"partition.scheme": "pathological", "partition.classes_per_client": 11},
     r"partition.classes_per_client must be between 1 and 10 .*digits.*got 11"),
    ("split_too_deep", {"model.head_blocks": 2, "model.tail_blocks": 2},
     r"model.head_blocks \+ model.tail_blocks must be below the backbone depth 4"),
    ("missing_weights", {"model.weights": "file:/nonexistent/w.safetensors"},
     r"weights file '/nonexistent/w.safetensors' \(config key model.weights\) does not exist"),
    ("bad_weights_spec", {"model.weights": "imagenet"}, r"'model.weights' must be scratch, timm:<tag> or file:<path>"),
    ("bad_device", {"device": "gpu"}, r"'device' must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ("negative_lr", {"train.lr": -0.1}, r"'train.lr' must be > 0"),
    ("bad_optimizer", {"train.optimizer": "lion"}, r"'train.optimizer' must be sgd or adamw, got 'lion'"),
    ("img_not_whole_patches", {"model.img_size": 15},
     r"^error: model.img_size must be a multiple of model.patch_size .*got img_size 15 and patch_size 4$"),
    # patch_size left to the architecture (vit_tiny_patch16_224: 16 px), checked on the model preflight builds
    ("img_not_whole_default_patches", {"model.patch_size": None, "model.img_size": 40},
     r"model.img_size must be a multiple of model.patch_size .*got img_size 40 and patch_size 16$"),
    ("yaml_syntax", "train: {rounds: [1, 2\n", r"is not valid YAML"),
]


def _write(tmp_path: Path, change) -> Path:
    path = tmp_path / "bad.yaml"
    if isinstance(change, str):
        path.write_text(change)
        return path
    cfg = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in change.items():
        node = cfg
        *parts, last = key.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("case_id,change,pattern", CASES, ids=[c[0] for c in CASES])
def test_cli_rejects_bad_config_with_one_line(tmp_path, capsys, case_id, change, pattern):
    results = tmp_path / "results"
    cfg = _write(tmp_path, change)
    code = main(["train", "--config", str(cfg), "--set", f"data.cache_dir={results}/cache", "--out",
                 str(results / "runs" / "x"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert re.search(pattern, err[0]), err[0]
    assert not results.exists() or not any(results.rglob("*")), list(results.rglob("*"))


def test_empty_data_root_names_folder_and_hub_id(tmp_path, capsys):
    empty = tmp_path / "mirror"
    empty.mkdir()
    results = tmp_path / "results"
    cfg = _write(tmp_path, {"data.dataset": "cifar10", "data.data_root": str(empty),
                            "data.cache_dir": str(results / "cache")})
    code = main(["train", "--config", str(cfg), "--out", str(results / "run"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert str(empty) in err[0] and "uoft-cs/cifar10" in err[0], err[0]
    assert not results.exists() or not any(p.is_file() for p in results.rglob("*"))


def test_data_verb_errors(capsys):
    assert main(["data", "--dataset", "nosuch"]) == 2
    assert "unknown dataset 'nosuch'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["runconfig", "--config", "results=/tmp/x", "--run", "r"], "--config-json 'results=/tmp/x' is not JSON"),
    (["grid", "--config-json", "[1, 2]"], "--config-json must hold a JSON object"),
])
def test_workflow_verbs_reject_a_config_json_that_is_not_a_json_object(argv, message, capsys):
    """``--config results=DIR`` (Snakemake's spelling) is read by argparse as ``--config-json``: one line saying so,
    not a JSONDecodeError traceback."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + message), err


def test_exit_status_from_a_real_process(tmp_path):
    cfg = _write(tmp_path, {"train.method": "fedsgd"})
    proc = subprocess.run([sys.executable, "-m", "benchmark", "train", "-c", str(cfg), "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown method 'fedsgd'")
    assert not (tmp_path / "o").exists()


# The same broken run settings, fed through the workflow's `run:` section: every run config the grid builds
# is validated (and preflight-checked) when the workflow config is loaded, before any job exists.
WORKFLOW_CASES = [c for c in CASES if isinstance(c[1], dict) and not any(
    k.split(".")[0] in ("seeds", "seed") or k in ("train.method", "data.dataset", "partition.scheme", "train",
                                                  "model.backbone", "model.img_size", "model.patch_size")
    for k in c[1])]


@pytest.mark.parametrize("case_id,change,pattern", WORKFLOW_CASES, ids=[c[0] for c in WORKFLOW_CASES])
def test_workflow_rejects_the_same_bad_run_settings(case_id, change, pattern):
    from benchmark.errors import ConfigError
    from benchmark.workflow.grid import load_workflow

    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    for key, value in change.items():
        node = raw["run"]
        *parts, last = key.split(".")
        for p in parts:
            node = node.setdefault(p, {})
        node[last] = value
    with pytest.raises(ConfigError) as err:
        load_workflow(raw)
    assert "\n" not in str(err.value)
    assert re.search(pattern.split(", got")[0].replace("\\(config key model.weights\\)", ".*"), str(err.value)) or \
        any(k.split(".")[-1] in str(err.value) for k in change), str(err.value)


def test_workflow_rejects_a_backbone_cropped_by_its_patch_grid():
    """The workflow's backbones section sets the model's size; a size that is no whole number of patches stops
    the workflow config with the same one line."""
    from benchmark.errors import ConfigError
    from benchmark.workflow.grid import load_workflow

    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw["backbones"]["tiny"]["model"]["img_size"] = 15
    with pytest.raises(ConfigError, match=r"backbones.tiny.*: model.img_size must be a multiple of model.patch_size .*got img_size "
                                          r"15 and patch_size 4$"):
        load_workflow(raw)
