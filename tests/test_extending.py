"""Bring your own method (docs/extending.md): a method file outside the checkout, named by config alone, through
the factory, ``train`` and the workflow; one-line errors for bad references; entry points; and traced costs
(meta device) against every built-in method's analytic hooks at ViT-B/16.

The registry is process-wide, so the method files live in one module-scoped folder and each class is named once.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from benchmark.analytic import method_round
from benchmark.config import RunConfig
from benchmark.errors import ConfigError
from benchmark.federation.method import TRACED, TRACED_FIRST
from benchmark.federation.trace import trace_rounds
from benchmark.methods import create_method, method_class, ordered
from benchmark.models.split import SplitViT
from benchmark.models.vit import create_backbone
from benchmark.workflow.grid import load_workflow
from tests.conftest import CLI_ENV, served_env
from tests.test_methods import make_cfg, make_data
from tests.test_run import write_cfg
from tests.test_workflow import CONFIGS

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ordered()  # every registered method and reference before any test adds its own

METHODS_FILE = '''
    """Methods a researcher keeps in their own folder."""
    from baselines.fedavg import FedAvg
    from benchmark.federation.method import Method


    class Mine(FedAvg):
        """FedAvg, unchanged."""


    class Hookless(Method):
        """FedAvg's training without its analytic hooks: its costs are traced."""

        name = "hookless"
        client_prefixes = FedAvg.client_prefixes
        phase = FedAvg.phase
        loss = FedAvg.loss
        local_update = FedAvg.local_update


    class Half(Hookless):
        name = "half"
        per_sample_costs = FedAvg.per_sample_costs


    class Clash(FedAvg):
        name = "fedprompt"


    class NotAMethod:
        pass
'''


@pytest.fixture(scope="module")
def methods_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("my_methods") / "my_methods.py"
    path.write_text(textwrap.dedent(METHODS_FILE))
    assert ROOT not in path.parents
    return path


def env_with_checkout() -> dict[str, str]:
    """The environment of a job started outside the checkout: this checkout's package first on the path
    (tests/conftest.py: ``CLI_ENV``), its heavy verb run in the session's fork server (whose child imports the
    suite and the method file from disk, as a process of its own does: tests/test_prefork.py)."""
    return served_env(**CLI_ENV)


# ---------------------------------------------------------------------------------------------------- the factory

def test_a_file_reference_registers_the_class_under_its_name(methods_file):
    ref = f"{methods_file}:Mine"
    cls = method_class(ref)
    assert cls.__name__ == "Mine" and cls.name == "mine" and method_class("mine") is cls
    assert method_class(ref) is cls  # a second lookup neither re-executes the file nor clashes with itself


@pytest.mark.parametrize("spec, message", [
    ("{dir}/my_methods.py:Nope", "has no attribute 'Nope'"),
    ("{dir}/none.py:Mine", "none.py' does not exist"),
    ("no_such_package_28.methods:Mine", "module 'no_such_package_28' not found"),
    ("{dir}/my_methods.py:NotAMethod", "not a subclass of benchmark.federation.method.Method"),
    ("{dir}/my_methods.py:Clash", "its name 'fedprompt' clashes with the registered method "
                                  "baselines.fedprompt.FedPrompt"),
    ("fedsgd", "unknown method 'fedsgd'; valid: fedavg"),
    (":Mine", "a reference is 'module.path:Class'"),
])
def test_bad_references_fail_with_one_line(methods_file, spec, message):
    with pytest.raises(ConfigError) as err:
        method_class(spec.format(dir=methods_file.parent))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_some_but_not_all_analytic_hooks_is_one_line(methods_file):
    with pytest.raises(ConfigError, match="implements per_sample_costs but not expected_samples, expected_transfers"):
        method_class(f"{methods_file}:Half").traced_costs()


def test_an_entry_point_names_an_installed_method(tmp_path, monkeypatch):
    """A real distribution's metadata on sys.path (what ``pip install`` writes), read by importlib.metadata."""
    (tmp_path / "ep_methods_28.py").write_text("from baselines.fedavg import FedAvg\n\nclass EpFedAvg(FedAvg):\n"
                                               "    pass\n")
    info = tmp_path / "ep_methods_28-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-methods-28\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[sfprompt_bench.methods]\nepfedavg = ep_methods_28:EpFedAvg\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = method_class("epfedavg")
    assert cls.__name__ == "EpFedAvg" and cls.name == "epfedavg"


def test_a_profile_checks_method_names_through_the_registry(methods_file):
    raw = yaml.safe_load(CONFIGS["smoke"].read_text())
    methods = raw["methods"]
    raw["methods"] = methods + [f"{methods_file.parent}/my_methods.py:NotAMethod"]
    with pytest.raises(ConfigError, match=r"^workflow config key 'methods.5': method .* not a subclass"):
        load_workflow(raw)
    raw["methods"] = methods + [f"{methods_file}:Mine"]
    raw["method_settings"]["mine"] = {"train.lr": 0.1}
    wf = load_workflow(raw)
    assert wf.methods == methods + ["mine"] and wf.method_sources == {"mine": f"{methods_file}:Mine"}
    runs = [r for r in wf.runs.values() if r.method == "mine"]
    assert runs and all(r.dir.split("/")[-2] == "mine" and r.config().train.method == f"{methods_file}:Mine"
                        and r.config().train.lr == 0.1 for r in runs)


# ---------------------------------------------------------------------------------------------------- the example

def test_fedprox_is_fedavg_plus_the_proximal_term():
    """examples/fedprox.py: mu = 0 trains exactly as FedAvg; otherwise its loss is FedAvg's plus mu/2 ||w - w^t||^2."""
    ref = f"{ROOT}/examples/fedprox.py:FedProx"
    data = make_data()
    fed = create_method(make_cfg("fedavg"), data)
    prox0 = create_method(make_cfg(ref, **{"method_params.mu": 0.0}), data)
    fed.run()
    prox0.run()
    assert fed.metrics == prox0.metrics and prox0.name == "fedprox" and prox0.label == "FedProx"
    m = create_method(make_cfg(ref, **{"method_params.mu": 0.5}), data)
    x, y = next(m.batches(data.client_indices[0], 0, 0, 0))
    with torch.no_grad():
        for p in m.trainable(m.global_client):
            p.add_(0.01)
    squared = sum(((m._params[k] - w) ** 2).sum() for k, w in m.global_client.items())
    assert torch.allclose(m.loss(x, y), torch.nn.functional.cross_entropy(m.model(x), y) + 0.25 * squared)
    with pytest.raises(ConfigError, match="method_params.mu"):
        create_method(make_cfg(ref, **{"method_params.mu": -1.0}), data)


def test_the_fedprox_profile_runs_it_beside_the_suite():
    wf = load_workflow(yaml.safe_load((ROOT / "config/examples/fedprox.yaml").read_text()))
    assert "fedprox" in wf.methods and wf.method_sources["fedprox"] == "examples/fedprox.py:FedProx"
    runs = [r for r in wf.runs.values() if r.method == "fedprox"]
    assert runs and {r.config().method_params["mu"] for r in runs} == {0.01}
    assert "fedprox" in wf.tuned_methods()


# ---------------------------------------------------------------------------------------------------- traced costs

@pytest.fixture(scope="module")
def vit_b16():
    torch.manual_seed(0)
    cfg = RunConfig().replace(**{"model.backbone": "vit_base_patch16_224", "model.weights": "scratch",
                                 "train.batch_size": 8})
    return cfg, create_backbone(cfg.model, 10)


@pytest.mark.parametrize("name", BUILT_IN)
def test_traced_costs_equal_the_analytic_hooks_at_vit_b16(name, vit_b16):
    """Two rounds of the method on the meta device (16 samples, batch 8: two full batches) against its hooks:
    FLOPs per party within 1% (the trace leaves out the norms fvcore counts, about 0.1% at ViT-B/16), bytes exact,
    in its first and in a steady round."""
    base, vit = vit_b16
    cls = method_class(name)
    cfg = base.replace(**{"train.method": name})
    m = cfg.model
    model = cls.set_trainability(SplitViT(vit, m.head_blocks, m.tail_blocks, m.prompt_len if cls.uses_prompts else 0,
                                          m.prompt_depth))
    traced = trace_rounds(cls, cfg, model, 16)
    for first in (True, False):
        comm, compute = method_round(cls, model, cfg, 16, first)
        for party in ("client", "server"):
            want = int(compute[compute.party == party].total.sum())
            got = traced[first].flops[party].total if party in traced[first].flops else 0
            assert abs(got - want) <= 0.01 * want, (party, first, got, want)
        keys = ["phase", "direction", "kind"]
        assert (comm.groupby(keys).bytes.sum().to_dict()
                == traced[first].comm.groupby(keys).bytes.sum().to_dict()), first


def test_a_method_without_hooks_is_charged_its_traced_rounds(methods_file):
    """A hookless copy of FedAvg trains exactly like FedAvg; its ledger holds its traced rounds (the first, then
    steady ones) for each client's own sample count, and its bytes are FedAvg's."""
    ref = f"{methods_file}:Hookless"
    data = make_data(sizes=[16, 24])
    runs = {}
    for name in ("fedavg", ref):
        runs[name] = create_method(make_cfg(name, **{"train.rounds": 2}), data)
        runs[name].run()
    fed, mine = runs["fedavg"], runs[ref]
    assert method_class(ref).traced_costs() and not fed.traced_costs()
    assert fed.metrics == mine.metrics
    assert fed.comm.frame().equals(mine.comm.frame())
    flops = mine.compute.frame()
    assert set(flops.phase) == {TRACED, TRACED_FIRST} and set(flops.party) == {"client"}
    for row in flops.itertuples(index=False):
        trace = trace_rounds(type(mine), mine.cfg, mine.model, len(data.client_indices[row.client]))
        assert row.total == trace[row.round == 0].flops["client"].total and row.phase == (
            TRACED_FIRST if row.round == 0 else TRACED)
    # the same training as FedAvg's counted two ways: within the norms' share of a 32-wide ViT
    fed_total, mine_total = fed.compute.frame().total.sum(), flops.total.sum()
    assert abs(mine_total - fed_total) <= 0.05 * fed_total


# ---------------------------------------------------------------------------------------------------- by config alone

def _rows(path: Path, drop: tuple[str, ...]) -> list[list[str]]:
    """A CSV's rows as written (strings, no float parsing), less the ``drop`` columns."""
    rows = list(csv.reader(io.StringIO(path.read_text())))
    keep = [i for i, c in enumerate(rows[0]) if c not in drop]
    return [[r[i] for i in keep] for r in rows]


def test_train_runs_a_method_file_by_config_alone_and_an_unchanged_fedavg_is_fedavg(methods_file, tmp_path):
    """``train`` started outside the checkout with ``train.method: <file>:Mine``: every file FedAvg's run writes,
    byte-identical except two columns of metrics.csv: ``method`` (the registry name: mine) and ``config_hash``
    (train.method is part of the config)."""
    outs = {}
    for name in ("fedavg", f"{methods_file}:Mine"):
        cfg = write_cfg(tmp_path, method=name)
        out = tmp_path / ("fedavg" if name == "fedavg" else "mine")
        subprocess.run([sys.executable, "-m", "benchmark", "train", "-c", str(cfg), "--out", str(out), "-q"],
                       cwd=tmp_path, env=env_with_checkout(), check=True, capture_output=True)
        outs[name] = out
    fed, mine = outs.values()
    assert {r[0] for r in _rows(mine / "metrics.csv", ())[1:]} == {"mine"}
    drop = ("method", "config_hash")
    assert _rows(fed / "metrics.csv", drop) == _rows(mine / "metrics.csv", drop)
    for name in ("comm.csv", "flops.csv"):
        assert (fed / name).read_bytes() == (mine / name).read_bytes(), name
    assert yaml.safe_load((mine / "config.resolved.yaml").read_text())["train"]["method"] == f"{methods_file}:Mine"


def test_the_workflow_runs_a_method_file_by_config_alone(tiny_results):
    """The session's tiny workflow (tests/conftest.py: FedAvg, SFPrompt and ``<file>:Mine`` in ``methods``, the
    file outside the checkout): Mine is tuned, trained, accounted, re-timed and reported. Every table of methods
    lists it (the privacy table lists the privacy section's split methods only; claims and crossover compare
    SFPrompt with FedAvg), and its run is FedAvg's, byte for byte."""
    results, methods_file = tiny_results.results, tiny_results.methods_file
    assert ROOT not in methods_file.parents and f"{methods_file}:Mine" in tiny_results.raw["methods"]
    tables = sorted([*results.glob("tables/*.csv"), *results.glob("accounting/*.csv"), *results.glob("system/*.csv")])
    with_methods = [t for t in tables if t.stem != "privacy" and "method" in _rows(t, ())[0]]
    assert {"accuracy", "paired", "resources", "system_rounds", "time_to_target", "tuning"} <= {
        t.stem for t in with_methods}, with_methods
    for table in with_methods:
        column = _rows(table, ())[0].index("method")
        assert "mine" in {row[column] for row in _rows(table, ())[1:]}, table.name
    tuned = json.loads((results / "tuning" / "tiny" / "digits" / "mine.json").read_text())
    assert tuned["method"] == tuned["search"] == "mine"  # its own search
    runs = results / "runs" / "tiny" / "digits" / "iid"
    resolved = yaml.safe_load((runs / "mine/seed0/config.resolved.yaml").read_text())["train"]
    assert resolved["method"] == f"{methods_file}:Mine" and resolved["lr"] == tuned["chosen_lr"]
    drop = ("method", "config_hash")
    assert _rows(runs / "fedavg/seed0/metrics.csv", drop) == _rows(runs / "mine/seed0/metrics.csv", drop)
    for name in ("comm.csv", "flops.csv"):
        assert (runs / "fedavg/seed0" / name).read_bytes() == (runs / "mine/seed0" / name).read_bytes(), name
