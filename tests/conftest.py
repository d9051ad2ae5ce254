"""Shared fixtures: tiny timm ViTs and offline settings for every test; the tiny workflow, run once per session.

Two workflows run end to end in a test session, each at most once: the smoke profile (``smoke_results`` in
tests/test_workflow.py: every section, table and figure) and the *tiny* profile below (plumbing: three methods
in one cell, one round). Tests that need either, or the local SLURM cluster, are put in one xdist group
(``workflows``), so under ``pytest -n N --dist loadgroup`` they share one worker and each workflow still runs once.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The backbone cache (benchmark/backbone_cache.py) defaults to ~/.cache: the tests, and the workflows they start
# (which inherit the environment), use a temporary one instead, never the user's.
os.environ["SFPROMPT_BACKBONE_CACHE"] = tempfile.mkdtemp(prefix="sfprompt-backbones-")
atexit.register(shutil.rmtree, os.environ["SFPROMPT_BACKBONE_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

import benchmark.methods  # noqa: E402,F401 (the built-in methods, registered before own_registry's first snapshot)
from benchmark import prefork  # noqa: E402
from benchmark.federation.method import METHODS  # noqa: E402

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)


@pytest.fixture(scope="module", autouse=True)
def own_registry():
    """Methods a test module registers (a method file named by a profile, a test's own subclass) leave the
    registry with it, so later modules see the built-in ones only (``ordered()``, ``federated_methods()``): loading
    the tiny profile in-process (tests/test_cluster.py) registers its ``Mine``."""
    saved = dict(METHODS._items)
    yield
    METHODS._items.clear()
    METHODS._items.update(saved)


@pytest.fixture
def tiny_vit():
    """A 4-block, 32-wide timm ViT on 16 px inputs (pretrained=False), in eval mode."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, **TINY).eval()


# ----------------------------------------------------------------------------------------------------------
# the tiny workflow: plumbing, once per session

TINY_METHODS = '''\
"""A method kept outside the checkout, named by a workflow profile alone (docs/extending.md)."""
from baselines.fedavg import FedAvg


class Mine(FedAvg):
    """FedAvg, unchanged: its runs must equal FedAvg's byte for byte."""
'''


def tiny_profile(results: Path, methods_file: Path) -> dict:
    """config/smoke.yaml cut to plumbing: digits/iid, seed 0, one round, a scratch backbone (no pre-training,
    no strength section), no references, ablations or sensitivity; FedAvg, SFPrompt and ``<methods_file>:Mine``
    tuned (two points), trained (SFPrompt and FedAvg also at their runner-up rates: ``tuning.recheck``),
    accounted at one split, re-timed on the smoke's client/link pairs, attacked (SFPrompt at one split, small
    budgets) and reported. 18 jobs, about 160 CPU-seconds."""
    raw = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    raw.update(results=str(results), seeds=[0], partitions={"iid": raw["partitions"]["iid"]},
               methods=["fedavg", "sfprompt", f"{methods_file}:Mine"], references={}, ablations={}, sensitivity={})
    raw["run"]["train"]["rounds"] = 1
    raw["backbones"]["tiny"].update(weights="scratch", pretrain={})
    raw.pop("strength")
    raw["accounting"]["splits"] = [[1, 1]]
    raw["tuning"]["recheck"] = True  # SFPrompt and FedAvg once more at their runner-up rates
    raw["privacy"] = dict(methods=["sfprompt"], splits=[[1, 1]], noise_sigma=[0.0], images=4, aux_samples=16,
                          optimisation={"steps": 5}, decoder={"epochs": 1, "hidden": 16})
    return raw


_TINY: dict[str, SimpleNamespace] = {}


def tiny_files() -> SimpleNamespace:
    """The tiny profile's files, written once per session and not run: ``base`` (a temporary folder), ``profile``
    (its config file, results in ``base/results``), ``raw`` (the profile as a dict) and ``methods_file`` (the method
    file outside the checkout it names). The SLURM tests start their run of it from these before the local run
    exists (tests/test_cluster.py)."""
    if "files" not in _TINY:
        base = Path(tempfile.mkdtemp(prefix="sfprompt-tiny-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        methods_file = base / "my_methods" / "tiny_methods.py"
        methods_file.parent.mkdir()
        methods_file.write_text(TINY_METHODS)
        raw = tiny_profile(base / "results", methods_file)
        profile = base / "profile.yaml"
        profile.write_text(yaml.safe_dump(raw))
        _TINY["files"] = SimpleNamespace(base=base, profile=profile, raw=raw, methods_file=methods_file)
    return _TINY["files"]


def tiny_workflow() -> SimpleNamespace:
    """One finished run of the tiny profile (run on first use): ``work`` (Snakemake's --directory), ``results``,
    ``profile`` (its config file), ``raw`` (the profile as a dict) and ``methods_file`` (the method file outside
    the checkout it names)."""
    if "run" not in _TINY:
        from tests.test_workflow import snakemake  # imports the workflow package: only when a test needs it

        files = tiny_files()
        work = files.base / "work"
        work.mkdir()
        snakemake("all", "--cores", "2", "--configfile", str(files.profile), workdir=work)
        _TINY["run"] = SimpleNamespace(work=work, results=files.base / "results", profile=files.profile,
                                       raw=files.raw, methods_file=files.methods_file)
    return _TINY["run"]


@pytest.fixture(scope="session")
def tiny_results() -> SimpleNamespace:
    """The tiny profile, run end to end once per test session (see :func:`tiny_workflow`)."""
    return tiny_workflow()


# ----------------------------------------------------------------------------------------------------------
# the tests' own `python -m benchmark` processes: one fork server per session

_SERVERS: dict[str, SimpleNamespace] = {}
"""The session's fork servers by the fingerprint of their environment: ``handle`` (None where none came up) and
``usage`` (its jobs file)."""


def _server_env(extra: dict[str, str]) -> tuple[dict[str, str], str]:
    """``os.environ`` plus ``extra`` without a server's socket, and the key of its server in :data:`_SERVERS`."""
    env = {k: v for k, v in {**os.environ, **extra}.items() if k != prefork.SOCKET_ENV}
    return env, json.dumps(prefork.fingerprint(env), sort_keys=True)


def served_env(**extra: str) -> dict[str, str]:
    """The environment for a test's ``python -m benchmark`` process: ``os.environ`` plus ``extra``, and the socket of
    a fork server (benchmark/prefork.py, as a local workflow starts one) that this session started with exactly that
    environment. A heavy verb (``train``, ``tune``, ``accounting``...) then runs in a fork of a process that imported
    torch, timm, pandas and the rest once per session, not once per process (~4-5 s each, about 25 processes a
    session: tests/test_run.py's ``cli``). Its files and exit status are those of a process of its own
    (tests/test_prefork.py compares them); tests about a user's plain process (no warning printed, the exit status
    of a real process, a killed run) start theirs without this. ``SFPROMPT_PREFORK=0``, or a server that does not
    come up: the plain environment, and each process imports for itself. Each server logs to ``prefork.log`` and
    records its jobs in ``prefork-jobs.tsv`` (:func:`served_jobs`), in a temporary folder of its own."""
    env, key = _server_env(extra)
    if key not in _SERVERS:
        before = os.environ.get(prefork.SOCKET_ENV)
        folder = Path(tempfile.mkdtemp(prefix="sfprompt-test-prefork-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        usage = folder / prefork.USAGE_FILE
        handle = prefork.start(env=env, log=folder / "prefork.log", usage=usage)
        # start() points this process's environment at the server; only the processes given this env use it
        if before is None:
            os.environ.pop(prefork.SOCKET_ENV, None)
        else:
            os.environ[prefork.SOCKET_ENV] = before
        _SERVERS[key] = SimpleNamespace(handle=handle, usage=usage)
    handle = _SERVERS[key].handle
    return env if handle is None else {**env, prefork.SOCKET_ENV: handle.socket}


def served_jobs(**extra: str) -> list[dict[str, str]]:
    """The jobs the session's server for ``served_env(**extra)`` has run (rows of its usage file, oldest first;
    empty when it ran none or none came up)."""
    server = _SERVERS.get(_server_env(extra)[1])
    if server is None or not server.usage.exists():
        return []
    rows = [line.split("\t") for line in server.usage.read_text().splitlines()]
    return [dict(zip(rows[0], row)) for row in rows[1:]]


# ----------------------------------------------------------------------------------------------------------
# pytest-xdist: the workflows' tests on one worker

@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """``-n N`` (pytest-xdist) gives way to one process where workers cannot serve: the benchmarks (pytest-benchmark
    measures nothing under xdist) and ``--pdb``. Runs before xdist's own hook (both are tryfirst; a conftest
    registers after the plugins), which then reads ``-n 0`` as no distribution."""
    if config.getoption("benchmark_only", False) or config.getoption("usepdb", False):
        if hasattr(config.option, "numprocesses"):
            config.option.numprocesses = 0


WORKFLOW_FIXTURES = {"smoke_results", "tiny_results", "cluster", "cluster_tiny", "cluster_cancelled"}
WORKFLOW_MODULES = {"test_cluster.py"}  # calls smoke_workflow()/tiny_workflow() outside fixtures too


def pytest_collection_modifyitems(config, items):
    """Every test that reads a session workflow (or the SLURM cluster) joins the ``workflows`` group: with
    ``--dist loadgroup`` one worker runs them all, so each workflow runs once (a session fixture runs once per
    worker). Without xdist the marker does nothing.

    The SLURM tests go last (in their order): their tiny run starts in the background when collection ends
    (:func:`pytest_collection_finish`), and the later they wait for it, the more of its time the other tests fill."""
    for item in items:
        if WORKFLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in WORKFLOW_MODULES:
            item.add_marker(pytest.mark.xdist_group("workflows"))
    items.sort(key=lambda item: item.path.name == "test_cluster.py")  # stable: every other order is kept


BACKGROUND_FIXTURES = {"cluster_tiny", "cluster_cancelled"}
"""Fixtures of tests/test_cluster.py whose cluster runs start in the background when collection ends."""


def _background_module(session):
    """tests/test_cluster.py and the background fixtures its selected tests use, or (None, set())."""
    module, fixtures = None, set()
    for item in getattr(session, "items", ()):
        used = BACKGROUND_FIXTURES & set(getattr(item, "fixturenames", ()))
        if used:
            module, fixtures = item.module, fixtures | used
    return module, fixtures


def pytest_collection_finish(session):
    """Start the SLURM runs of tests/test_cluster.py (the tiny run, the cancelled-job run) now if a selected test
    reads them and the local cluster is up. Not under pytest-xdist (their fixtures then start them on the worker
    that runs the cluster tests) or ``--collect-only``."""
    if session.config.option.collectonly or "PYTEST_XDIST_WORKER" in os.environ:
        return
    module, fixtures = _background_module(session)
    if module is not None:
        module.start_background(fixtures)


def pytest_sessionfinish(session, exitstatus):
    """The session's fork servers (:func:`served_env`) are stopped. A SLURM run the session did not wait for
    (interrupted, or ``-x`` stopped it first) is stopped with its jobs, not left on the cluster."""
    for server in _SERVERS.values():
        prefork.stop(server.handle)
    _SERVERS.clear()
    module, _ = _background_module(session)
    if module is not None:
        module.stop_background(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)
