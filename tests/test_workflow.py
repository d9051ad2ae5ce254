"""The Snakemake workflow: config validation, grid expansion, the DAGs of every profile, and the smoke profile
end to end (run once per test session, shared with tests/test_report.py and tests/test_notebook.py).

The smoke workflow runs in a temporary working directory (``--directory``) so its ``.snakemake`` metadata and
locks never touch the checkout's; results go to ``<tmp>/results``. Its pretrain job uses the temporary backbone
cache that tests/conftest.py points ``SFPROMPT_BACKBONE_CACHE`` at (jobs inherit the environment), never ~/.cache.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from benchmark import prefork
from benchmark.config import RunConfig, parse_overrides
from benchmark.errors import ConfigError
from benchmark.overrides import set_args, yaml_scalar
from benchmark.workflow.grid import load_workflow, load_workflow_file
from benchmark.workflow.privacy import PRIVACY_RUN_PRIORITY
from benchmark.workflow.schema import SCHEMA_PATH
from tests.conftest import BACKGROUND, Background

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {name: ROOT / "config" / f"{name}.yaml" for name in ("smoke", "default", "paper")}


def snakemake_cmd(*args: str, workdir: Path | None = None) -> list[str]:
    """The command that runs Snakemake from this interpreter (so jobs use the same environment) on the repository's
    Snakefile in ``workdir`` (its ``--directory``)."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
            str(workdir or ROOT), *args]


def snakemake(*args: str, workdir: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run Snakemake (:func:`snakemake_cmd`) and wait for it."""
    cmd = snakemake_cmd(*args, workdir=workdir)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=2400)
    proc.log = proc.stdout + proc.stderr  # Snakemake logs to stderr
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def job_counts(output: str) -> dict[str, int]:
    """The first 'Job stats' table of a Snakemake dry run, as {rule: count} (empty if nothing to do)."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    if "Job stats:" not in lines:
        return counts
    for line in lines[lines.index("Job stats:") + 3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    counts.pop("total", None)
    return counts


# ----------------------------------------------------------------------------------------------------------
# the smoke workflow, once per session

_SMOKE: dict[str, Path] = {}


def _smoke_args(work: Path) -> tuple[str, ...]:
    return ("all", "--cores", "2", "--configfile", str(CONFIGS["smoke"]), "--config", f"results={work / 'results'}")


def _smoke_folder() -> Path:
    work = Path(tempfile.mkdtemp(prefix="sfprompt-smoke-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def start_smoke_workflow() -> None:
    """Start the smoke workflow in the background (tests/conftest.py's ``Background``, when collection ends);
    :func:`smoke_workflow` waits for it."""
    if _SMOKE or "smoke" in BACKGROUND:
        return
    work = _smoke_folder()
    BACKGROUND["smoke"] = Background("the smoke workflow", snakemake_cmd(*_smoke_args(work), workdir=work),
                                     work / "snakemake.out")
    BACKGROUND["smoke"].work = work


def smoke_workflow() -> tuple[Path, Path]:
    """(working directory, results folder) of one finished smoke workflow (run on first use, or started in the
    background when collection ended)."""
    if not _SMOKE:
        if "smoke" in BACKGROUND:
            BACKGROUND["smoke"].wait()
            work = BACKGROUND["smoke"].work
        else:
            work = _smoke_folder()
            snakemake(*_smoke_args(work), workdir=work)
        _SMOKE.update(work=work, results=work / "results")
    return _SMOKE["work"], _SMOKE["results"]


@pytest.fixture(scope="session")
def smoke_results() -> Path:
    """The results folder of the smoke profile, run end to end once per test session."""
    return smoke_workflow()[1]


def smoke_dry_run(*targets: str) -> dict[str, int]:
    work, results = smoke_workflow()
    out = snakemake(*targets, "-n", "--cores", "8", "--configfile", str(CONFIGS["smoke"]), "--config",
                    f"results={results}", workdir=work).log
    assert "Nothing to be done" in out or "Job stats:" in out, out[-2000:]
    return job_counts(out)


# ----------------------------------------------------------------------------------------------------------
# config and schema


def _walk(schema: dict, path: str = ""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from _walk(sub, f"{path}{key}.")
    for name, sub in schema.get("$defs", {}).items():
        yield f"$defs.{name}", sub
        yield from _walk(sub, f"$defs.{name}.")
    for key in ("additionalProperties", "items"):
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{path}{key}.")


def test_schema_describes_every_key():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    missing = [p for p, sub in _walk(schema) if "description" not in sub and "$ref" not in sub]
    assert not missing, f"schema keys without a description: {missing}"


def test_schema_names_match_the_registries():
    from benchmark.data.datasets import DATASETS

    defs = yaml.safe_load(SCHEMA_PATH.read_text())["$defs"]
    # datasets are not an enum (a profile may declare its own); every preset's name is a valid dataset name
    assert "enum" not in defs["dataset"] and all(re.match(defs["dataset"]["pattern"], n) for n in DATASETS.names())
    # nor are methods (a profile may bring its own, docs/extending.md): the registry checks them at profile load
    assert "enum" not in defs["method"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_profiles_validate_and_build_every_run_config(name):
    wf = load_workflow_file(CONFIGS[name])
    assert wf.runs and all(isinstance(r.config(), RunConfig) for r in wf.runs.values())
    methods = {"fedavg", "fedprompt", "sfl_v1", "sfl_v2", "sfprompt"}
    assert {r.method for r in wf.runs.values() if r.partition != "pooled"} == methods
    assert {r.method for r in wf.runs.values()} <= methods | {"linear_probe"}
    kinds = {role.kind for r in wf.runs.values() for role in r.roles}
    assert kinds - {"reference", "strength", "runner_up"} == {"method", "ablation", "sensitivity", "noise"}  # noise: privacy.noise_training
    assert ("strength" in kinds) == (name != "paper")  # the paper profile's hub backbones have no checkpoints
    assert ("runner_up" in kinds) == (name == "paper")  # tuning.recheck: on where the accuracy verdicts are judged
    assert {(a.split) for a in wf.accounting.values()} >= {(0, 0), (1, 1)}


def test_paper_profile_is_paper_scale():
    wf = load_workflow_file(CONFIGS["paper"])
    assert {b["model"]["backbone"] for b in wf.backbones.values()} == {"vit_base_patch16_224", "vit_large_patch16_224"}
    assert {b["weights"] for b in wf.backbones.values()} == {"timm:augreg_in21k"}
    assert set(wf.datasets) == {"cifar10", "cifar100", "svhn", "flowers102"}
    assert len(wf.seeds) >= 5 and any(p["scheme"] == "dirichlet" for p in wf.partitions.values())  # judges the paper
    cfg = next(iter(wf.runs.values())).config()
    assert cfg.model.img_size is None  # timm's default resolution: 224 px
    assert wf.resources("train")["gpu"] == 1


def test_default_profile_pretrains_on_cifar100():
    wf = load_workflow_file(CONFIGS["default"])
    (label,) = wf.pretrained()
    assert wf.backbones[label]["pretrain"]["dataset"] == "cifar100"
    assert set(wf.datasets) == {"cifar10", "fashion_mnist"}
    assert {p["scheme"] for p in wf.partitions.values()} == {"iid", "dirichlet"}


def _smoke_raw() -> dict:
    return yaml.safe_load(CONFIGS["smoke"].read_text())


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c.update(rounds=3), "unknown workflow config key 'rounds'"),
    (lambda c: c["partitions"]["iid"].update(alpha_=1), "unknown workflow config key 'partitions.iid.alpha_'"),
    (lambda c: c["partitions"]["iid"].update(scheme="random"), "'partitions.iid.scheme'"),
    (lambda c: c.update(methods=["fedavg", "fedsgd"]), "'methods.1'"),
    (lambda c: c.update(datasets={"cifar11": {}}), "'datasets.cifar11': unknown dataset 'cifar11'; valid: cifar10"),
    (lambda c: c.update(datasets={"mine": {"source": "ftp:x"}}), "'datasets.mine.source'"),
    (lambda c: c.update(datasets={"mine": {"source": "parquet:/x", "image_col": "a"}}),
     "unknown workflow config key 'datasets.mine.image_col'"),
    (lambda c: c.update(datasets={"mine": {"source": "parquet:/x", "test_fraction": 1.0}}),
     "'datasets.mine.test_fraction'"),
    (lambda c: c.update(datasets={"my/set": {"source": "parquet:/x"}}), "'datasets'"),
    (lambda c: c["ablations"]["variants"].update(typo={"train.keep_rato": 1.0}), "train.keep_rato"),
    (lambda c: c["ablations"]["variants"].update(bad={"data.max_train_samples": 10}), "'ablations.variants.bad.data"),
    (lambda c: c["run"]["train"].update(lr=-1.0), "train.lr"),
    (lambda c: c["run"].update(seed=3), "'run.seed' is set by the grid"),
    (lambda c: c.update(method_settings={"fedavg": {"train.local_epochs": 2}}), "method_settings.fedavg.train.local_epochs"),
    (lambda c: c["sensitivity"]["scope"].update(partitions=["dir9"]), "'sensitivity.scope.partitions'"),
    (lambda c: c["sensitivity"].update(split=[[2, 2]]), "below the backbone depth 4"),
    (lambda c: c["datasets"]["digits"].pop("max_train_samples"), "accounting.samples_per_client"),
    (lambda c: c["resources"]["default"].update(threads=0), "'resources.default.threads'"),
    (lambda c: c["strength"].update(checkpoints=[0.5]), "'strength.checkpoints': 0.5 is not a checkpoint that "
                                                        "pre-training saves (backbones.tiny.pretrain.checkpoints: 0.3, 0.6, 1)"),
    (lambda c: c["strength"].update(checkpoints=[1.5]), "'strength.checkpoints.0'"),
    (lambda c: c["strength"].update(methods=["linear_probe"]), "'strength.methods': 'linear_probe' is not in methods"),
    (lambda c: c["backbones"].update(hub={"model": {"backbone": "vit_tiny_patch16_224"}, "weights": "timm:augreg"})
     or c["strength"]["scope"].update(backbones=["hub"]), "'strength.scope.backbones': 'hub' has weights 'timm:augreg'"),
    (lambda c: c["backbones"]["tiny"].update(weights="scratch"), "'strength': no backbone in its scope is pre-trained"),
])
def test_bad_configs_fail_with_one_line_naming_the_key(edit, expected):
    raw = _smoke_raw()
    edit(raw)
    with pytest.raises(ConfigError) as err:
        load_workflow(raw)
    message = str(err.value)
    assert expected in message and "\n" not in message


def test_snakemake_rejects_a_bad_config_before_any_job(tmp_path):
    raw = _smoke_raw()
    raw["partitions"]["iid"]["sheme"] = "iid"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    proc = snakemake("-n", "--configfile", str(bad), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert "unknown workflow config key 'partitions.iid.sheme'" in proc.log
    assert "Job stats" not in proc.log


# ----------------------------------------------------------------------------------------------------------
# the grid


def test_sweep_points_equal_to_another_variant_reuse_its_run():
    wf = load_workflow_file(CONFIGS["smoke"])
    iid = {r.variant: r for r in wf.runs.values() if r.partition == "iid" and r.seed == 0}
    roles = {v: {(x.kind, x.name, x.value) for x in r.roles} for v, r in iid.items()}
    assert ("sensitivity", "keep_ratio", 1.0) in roles["no_pruning"]
    assert ("sensitivity", "prompt_len", 0) in roles["no_prompts"]
    assert {("sensitivity", "keep_ratio", 0.5), ("sensitivity", "split", "h1t1")} <= roles["sfprompt"]
    assert "sfprompt-keep_ratio0.25" in iid and "sfprompt-split_h0t0" in iid
    configs = [tuple(r.settings) for r in wf.runs.values()]
    assert len(configs) == len(set(configs)) == 44
    # ablations and sensitivity run only in their scope (iid, seed 0); methods run in every cell and seed; the
    # noise defence's runs (privacy cell digits/iid, every seed) train the privacy methods at each σ > 0
    assert {r.variant for r in wf.runs.values() if r.partition == "iid" and r.seed == 1} == set(wf.methods) | {
        "fedavg@30", "fedprompt@30", "sfprompt@30"} | {  # strength runs over every seed of the grid
        f"{m}-noise0.25" for m in wf.privacy["methods"]}
    assert {r.variant for r in wf.runs.values() if r.partition == "dir0.5"} == set(wf.methods)


def test_strength_runs_fine_tune_each_checkpoint_and_reuse_the_main_runs():
    from benchmark.workflow.names import Role

    wf = load_workflow_file(CONFIGS["smoke"], {"results": "/tmp/r"})
    strength = {r.key: r for r in wf.runs.values() if any(x.kind == "strength" for x in r.roles)}
    methods, seeds = ("fedavg", "fedprompt", "sfprompt"), (0, 1)
    assert set(strength) == {("tiny", "digits", "iid", v, s) for m in methods for v in (m, f"{m}@30") for s in seeds}
    for key, run in strength.items():
        point = key[3].endswith("@30")
        label = "tiny@30" if point else "tiny"
        assert Role("strength", label, 0.3 if point else 1.0) in run.roles
        assert ("method", key[3]) in {(x.kind, x.name) for x in run.roles} or point  # 100%: the main grid's run
        weights = f"/tmp/r/backbones/{label}.safetensors"
        assert run.config().model.weights == f"file:{weights}" and wf.checkpoint_of(run) == label
        assert wf.train_input(run_wildcards(run))["weights"] == weights  # the rule's input: the checkpoint's file
        assert f"model.weights=file:{weights}" in wf.train_args(run_wildcards(run))
        if point:  # the same run as the main one but for the weights
            main = dict(wf.runs[(*key[:3], run.method, key[4])].settings)
            assert {k: v for k, v in run.settings if v != main.get(k)} == {"model.weights": f"file:{weights}"}
    raw = _smoke_raw()
    del raw["strength"]
    assert len(wf.runs) - len(load_workflow(raw).runs) == len(methods) * len(seeds)  # the 100% point: no new run
    assert wf.strength_cards() == ["/tmp/r/backbones/tiny@30.json", "/tmp/r/backbones/tiny.json"]


def test_run_settings_are_what_the_run_trains_with():
    wf = load_workflow_file(CONFIGS["smoke"], {"results": "/tmp/r"})
    run = wf.runs[("tiny", "digits", "dir0.5", "fedavg", 0)]
    cfg = RunConfig().replace(**parse_overrides(_split_sets(wf.train_args(run_wildcards(run)))))
    assert cfg == run.config()
    # train.lr here is the base; the job adds --lr-from with FedAvg's tuning record (tests/test_tuning.py)
    assert (cfg.train.method, cfg.train.lr, cfg.partition.scheme, cfg.partition.alpha) == ("fedavg", 0.03, "dirichlet", 0.5)
    assert wf.train_input(run_wildcards(run))["tuning"] == "/tmp/r/tuning/tiny/digits/fedavg.json"
    assert cfg.model.weights == "file:/tmp/r/backbones/tiny.safetensors" and cfg.data.cache_dir == "/tmp/r/cache"


def run_wildcards(run) -> SimpleNamespace:
    return SimpleNamespace(backbone=run.backbone, dataset=run.dataset, partition=run.partition, variant=run.variant,
                           seed=run.seed)


def _split_sets(args: str) -> list[str]:
    import shlex

    parts = shlex.split(args)
    return [parts[i + 1] for i in range(0, len(parts), 2)]


@pytest.mark.parametrize("value", [1e-5, 0.1, 3.0, 1e20, 7, True, False, None, "file:/a b/w.safetensors",
                                   "true", "1", "timm:augreg_in21k", "", "null"])
def test_set_values_round_trip_through_the_cli_parser(value):
    assert parse_overrides([f"k={yaml_scalar(value)}"])["k"] == value
    assert parse_overrides(_split_sets(set_args({"k": value})))["k"] == value


def test_partition_and_pretrain_params_hold_only_what_their_output_depends_on():
    wf = load_workflow_file(CONFIGS["smoke"])
    part = wf.partition_args(SimpleNamespace(dataset="digits", partition="dir0.5", seed=0))
    assert "partition.scheme=dirichlet" in part and "--set train." not in part and "prompt_len" not in part
    pre = wf.pretrain_args(SimpleNamespace(backbone="tiny"))
    assert "pretrain.dataset=mnist5k" in pre and "--set train." not in pre and "--set partition." not in pre


def test_pretrain_checkpoints_are_outputs_and_the_cache_folder_is_a_param(monkeypatch, tmp_path):
    monkeypatch.setenv("SFPROMPT_BACKBONE_CACHE", str(tmp_path / "env-cache"))
    wf = load_workflow_file(CONFIGS["smoke"], {"results": "out"})
    assert wf.backbone_cache == str(tmp_path / "env-cache")
    assert wf.checkpoint_pcts() == [30, 60]
    files = ["out/backbones/tiny@30.safetensors", "out/backbones/tiny@30.json", "out/backbones/tiny@60.safetensors",
             "out/backbones/tiny@60.json"]
    assert wf.checkpoint_files("tiny") == files and set(files) <= set(wf.final_targets())
    assert wf.grid()["backbones"]["tiny"]["checkpoints"] == {"30": "backbones/tiny@30.json", "60": "backbones/tiny@60.json"}
    assert "pretrain.checkpoints=" in wf.pretrain_args(SimpleNamespace(backbone="tiny"))
    assert load_workflow_file(CONFIGS["smoke"], {"backbone_cache": "~/bb"}).backbone_cache == str(Path("~/bb").expanduser())
    default = load_workflow_file(CONFIGS["default"], {"results": "out"})
    assert default.checkpoint_files("vit_s32")[0] == "out/backbones/vit_s32@10.safetensors"


def test_pretrained_backbones_must_share_checkpoint_percents():
    raw = _smoke_raw()
    raw["backbones"]["tiny2"] = copy.deepcopy(raw["backbones"]["tiny"])
    raw["backbones"]["tiny2"]["pretrain"]["checkpoints"] = [0.5, 1.0]
    with pytest.raises(ConfigError, match="every pre-trained backbone lists the same checkpoint percents"):
        load_workflow(raw)


# ----------------------------------------------------------------------------------------------------------
# Snakemake: lint and DAGs


def test_lint_is_clean():
    proc = snakemake("--lint", "--configfile", str(CONFIGS["smoke"]))
    assert "Lints for" not in proc.log and "Congratulations" in proc.log


@pytest.mark.parametrize("name", ["smoke", "default"])
def test_the_runs_a_privacy_job_reads_train_first(name):
    """The train rule's priority (scheduling only) is PRIVACY_RUN_PRIORITY exactly for the runs whose final head a
    privacy job reads (its inputs), so the long privacy job can start while the other runs train."""
    wf = load_workflow_file(CONFIGS[name])
    read = {str(Path(h).parent) for split, cases in wf.privacy_cases.items() for h in
            wf.privacy_input(SimpleNamespace(backbone=wf.privacy_cell()[0], split=split)).get("heads", [])}
    first = {wf.path(r.dir) for r in wf.runs.values() if wf.train_priority(run_wildcards(r)) == PRIVACY_RUN_PRIORITY}
    others = {wf.train_priority(run_wildcards(r)) for r in wf.runs.values() if wf.path(r.dir) not in first}
    assert read and first == read and others == {0}
    assert 10 < PRIVACY_RUN_PRIORITY < 20  # above the privacy job, below tuning (workflow/rules/*.smk)


@pytest.mark.parametrize("name", ["default", "paper"])
def test_dag_builds(name, tmp_path):
    wf = load_workflow_file(CONFIGS[name])
    counts = job_counts(snakemake("-n", "--configfile", str(CONFIGS[name]), "--config", f"results={tmp_path}",
                                  workdir=tmp_path).log)
    assert counts["train"] == len(wf.runs)
    assert counts["account"] == len(wf.accounting)
    assert counts["partition"] == len(wf.partition_targets())
    assert counts.get("pretrain", 0) == len(wf.pretrained())
    assert counts["tables"] == counts["figures"] == counts["manifest"] == 1
    assert counts["privacy_attack"] == len(wf.privacy_cases)
    assert "tune_run" not in counts and counts["tune"] == len(wf.tuning)  # one job per search, not per point
    caches = {wf.cache_file(r.config()) for r in wf.runs.values()}
    caches |= {wf.pretrain_input(SimpleNamespace(backbone=b))["cache"] for b in wf.pretrained()}
    assert counts["cache"] == len(caches)  # one decode per (dataset, size), whatever reads it


def test_cache_files_are_named_by_dataset_and_resolution():
    wf = load_workflow_file(CONFIGS["paper"], {"results": "out"})
    files = {Path(wf.cache_file(r.config())).name for r in wf.runs.values()}
    # 32-px sets are cached at 32 px (upsampled per batch); flowers102 at the backbone's own 224 px
    assert files == {"cifar10-32px.safetensors", "cifar100-32px.safetensors", "svhn-32px.safetensors",
                     "flowers102-224px.safetensors"}
    assert wf.cache_dirs() == ["out/cache"]
    smoke = load_workflow_file(CONFIGS["smoke"], {"results": "out"})
    assert smoke.pretrain_input(SimpleNamespace(backbone="tiny")) == {"cache": "out/cache/mnist5k-16px.safetensors"}
    assert smoke.partition_input(SimpleNamespace(dataset="digits", partition="iid", seed=0)) == {
        "cache": "out/cache/digits-16px.safetensors"}


def test_cache_rule_params_carry_a_declared_dataset():
    raw = _smoke_raw()
    raw["datasets"] = {"digits": {"max_train_samples": 800},
                       "leaves": {"source": "parquet:/data/leaves", "label_column": "kind", "max_train_samples": 40}}
    wf = load_workflow(raw)
    assert wf.cache_args(SimpleNamespace(dataset="digits")) == ""
    args = wf.cache_args(SimpleNamespace(dataset="leaves"))
    assert args == "--set data.label_column=kind --set data.source=parquet:/data/leaves"
    run = wf.runs[("tiny", "leaves", "iid", "fedavg", 0)]
    assert run.config().data.source == "parquet:/data/leaves" and run.dir.startswith("runs/tiny/leaves/iid/")


def test_paper_accounting_needs_no_training(tmp_path):
    counts = job_counts(snakemake("accounting", "-n", "--configfile", str(CONFIGS["paper"]), "--config",
                                  f"results={tmp_path}", workdir=tmp_path).log)
    assert counts == {"account": 16, "accounting": 1}  # 2 backbones x 2 splits x 4 datasets' sizes
    wf = load_workflow_file(CONFIGS["paper"])
    sizes = {a.dataset: a.samples_per_client for a in wf.accounting.values()}
    assert sizes == {"cifar10": 1000, "cifar100": 1000, "svhn": 1465, "flowers102": 20}
    assert ("vit_b16.svhn", "h0t0") in wf.accounting


# ----------------------------------------------------------------------------------------------------------
# the smoke profile end to end


def test_smoke_writes_every_target(smoke_results):
    wf = load_workflow_file(CONFIGS["smoke"], {"results": str(smoke_results)})
    for path in wf.final_targets() + wf.run_targets() + wf.accounting_targets() + wf.partition_targets():
        assert Path(path).is_file(), path
    assert (smoke_results / "backbones" / "tiny.safetensors").is_file()
    assert set(wf.tables()) == {"accuracy", "paired", "resources", "ablation", "claims", "sensitivity", "time_to_target",
                                "system_rounds", "crossover", "privacy", "tuning", "strength"}
    assert set(wf.figures()) == {"accuracy_vs_round", "accuracy_vs_comm", "flops_vs_accuracy", "partitions",
                                 "sensitivity", "accuracy_vs_time", "privacy_reconstructions", "privacy_frontier",
                                 "strength"}
    for path in wf.system_targets():
        assert Path(path).is_file(), path
    # time to target: every (cell, profile pair, method), "not reached" being a valid cell
    ttt = pd.read_csv(smoke_results / "tables" / "time_to_target.csv")
    cells = len(wf.datasets) * len(wf.partitions)
    assert len(ttt) == cells * len(wf.system["pairs"]) * len(wf.methods)
    assert (ttt.reached <= ttt.seeds).all() and ttt.target_accuracy.gt(0).all()
    claims = (smoke_results / "tables" / "claims.csv").read_text()
    assert "privacy" in claims and "split 0/0" in claims


def test_jobs_honour_the_declared_threads_and_share_partitions(smoke_results):
    for env_file in (smoke_results / "runs").rglob("env.json"):
        env = json.loads(env_file.read_text())
        assert env["torch_threads"] == 1, env_file
        cell = env_file.parent.parent.parent  # runs/{b}/{dataset}/{partition}
        part = json.loads((smoke_results / "partitions" / cell.parent.name / cell.name
                           / f"{env_file.parent.name}.json").read_text())
        assert env["partition_hash"] == part["hash"], env_file


def test_every_dataset_is_decoded_once_by_the_cache_rule(smoke_results):
    caches = sorted(p.name for p in (smoke_results / "cache").glob("*.safetensors"))
    assert caches == ["digits-16px.safetensors", "mnist5k-16px.safetensors"]
    # the first job reading each cache: a partition of that dataset, or pre-training for mnist5k (no partition
    # reads it, so with other jobs in the DAG it may be decoded after digits' partitions: that is fine)
    readers = {"digits-16px.safetensors": (smoke_results / "partitions" / "digits").rglob("*.json"),
               "mnist5k-16px.safetensors": (smoke_results / "backbones").glob("*.safetensors")}
    for name in caches:  # written by the cache rule (its log names the file) before any job read it
        assert name in (smoke_results / "cache" / "logs" / name.replace(".safetensors", ".log")).read_text()
        assert (smoke_results / "cache" / name).stat().st_mtime < min(p.stat().st_mtime for p in readers[name])


def test_costs_verb_sums_the_job_timings(smoke_results):
    from benchmark.report.costs import job_costs, read_job_files

    jobs = read_job_files(smoke_results)
    wf = load_workflow_file(CONFIGS["smoke"], {"results": str(smoke_results)})
    per_rule = jobs.groupby("rule").size().to_dict()
    assert per_rule["train"] == len(wf.runs)
    assert per_rule["cache"] == 2 and per_rule["partition"] == len(wf.partition_targets())
    assert per_rule["accounting"] == len(wf.accounting) and per_rule["pretrain"] == 1
    # Wall time is exact; CPU time and memory are samples (Snakemake polls each job's processes about once a
    # second, then every 30 s): a short job can read 0 CPU seconds, or NA when no poll landed in it. Assert
    # only what a poll guarantees: a job polled over several seconds of a running Python has used CPU.
    assert (jobs.wall_s > 0).all()
    sampled = jobs.dropna(subset=["cpu_s", "max_rss_mb"])
    assert (sampled.cpu_s >= 0).all() and (sampled.max_rss_mb >= 0).all()
    long_jobs = sampled[sampled.wall_s >= 5]
    assert len(long_jobs) and (long_jobs.cpu_s > 0).all() and (long_jobs.max_rss_mb > 0).all()
    if prefork.enabled():  # a local run: the train jobs ran in the fork server's children, whose usage is exact
        train = jobs[jobs.rule == "train"]
        assert train.exact.all() and (train.cpu_s > 0).all() and (train.max_rss_mb > 0).all()
    table, span = job_costs(smoke_results)
    total = table.set_index("rule").loc["all"]
    assert total.jobs == len(jobs) and total.cpu_s == pytest.approx(jobs.cpu_s.sum(skipna=True))
    assert jobs.wall_s.max() <= span <= jobs.wall_s.sum() + 60
    out = subprocess.run([sys.executable, "-m", "benchmark", "costs", "--results", str(smoke_results)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True).stdout
    assert "| train " in out and "CPU time at least" in out


def test_running_again_does_nothing(smoke_results):
    assert smoke_dry_run("all") == {}


def test_deleting_one_run_reruns_only_what_depends_on_it(smoke_results):
    """The plan after one run's folder is gone: that run and the report, nothing else. The folder is moved aside
    and back (same files, same times), not retrained: training it again is what every workflow run does, and it
    cost this test ~30 s of a report rebuilt for nothing. The last dry run checks that the restored folder is the
    one Snakemake recorded."""
    work, results = smoke_workflow()
    run = results / "runs" / "tiny" / "digits" / "dir0.5" / "sfl_v1" / "seed0"
    aside = work / "sfl_v1-seed0-moved-aside"  # outside the results folder, on its file system
    run.rename(aside)
    try:
        planned = smoke_dry_run("all")
    finally:  # restore the run for the other tests, whatever the dry run said
        aside.rename(run)
    assert planned == {"train": 1, "tables": 1, "figures": 1, "manifest": 1, "all": 1}
    assert smoke_dry_run("all") == {}


def test_grid_and_runconfig_verbs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "benchmark", "grid", "-w", str(CONFIGS["smoke"])], capture_output=True,
                         text=True, env=env, cwd=tmp_path, check=True).stdout
    assert "44 runs (20 method, 12 strength, 7 sensitivity, 4 ablation, 6 noise, 6 reference roles)" in out and "runs/tiny/digits/iid/no_pruning/seed0  [ablation:no_pruning, sensitivity:keep_ratio=1.0]" in out
    target = tmp_path / "run.yaml"
    subprocess.run([sys.executable, "-m", "benchmark", "runconfig", "-w", str(CONFIGS["smoke"]), "--run",
                    "tiny/digits/iid/no_pruning/seed0", "--out", str(target)], env=env, cwd=tmp_path, check=True)
    cfg = yaml.safe_load(target.read_text())
    assert cfg["method_params"]["keep_ratio"] == 1.0 and cfg["train"]["method"] == "sfprompt"
