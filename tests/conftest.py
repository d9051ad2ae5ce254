"""Shared fixtures: tiny timm ViTs and offline settings for every test; the tiny workflow, run once per session.

Two workflows run end to end in a test session, each at most once: the smoke profile (``smoke_results`` in
tests/test_workflow.py: every section, table and figure) and the *tiny* profile below (plumbing: three methods
in one cell, one round). They start in the background when collection ends (:class:`Background`), and the tests
that read them run after the others, which mostly use one core. Tests that need either, or the local SLURM
cluster, are put in one xdist group (``workflows``), so under ``pytest -n N --dist loadgroup`` they share one
worker and each workflow still runs once (there, on first use).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

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
        if "tiny" in BACKGROUND:
            BACKGROUND["tiny"].wait()
        else:
            work.mkdir()
            snakemake(*TINY_ARGS, "--configfile", str(files.profile), workdir=work)
        _TINY["run"] = SimpleNamespace(work=work, results=files.base / "results", profile=files.profile,
                                       raw=files.raw, methods_file=files.methods_file)
    return _TINY["run"]


TINY_ARGS = ("all", "--cores", "2")


def start_tiny_workflow() -> None:
    """Start the tiny workflow in the background (:class:`Background`); :func:`tiny_workflow` waits for it."""
    if "run" in _TINY or "tiny" in BACKGROUND:
        return
    from tests.test_workflow import snakemake_cmd

    files = tiny_files()
    work = files.base / "work"
    work.mkdir()
    BACKGROUND["tiny"] = Background(
        "the tiny workflow", snakemake_cmd(*TINY_ARGS, "--configfile", str(files.profile), workdir=work),
        files.base / "snakemake.out")


@pytest.fixture(scope="session")
def tiny_results() -> SimpleNamespace:
    """The tiny profile, run end to end once per test session (see :func:`tiny_workflow`)."""
    return tiny_workflow()


# ----------------------------------------------------------------------------------------------------------
# workflows started in the background when collection ends

WORKFLOW_TIMEOUT = 2400
"""Seconds a session workflow may take from its start."""


def _prctl():
    """libc's ``prctl``, looked up in pytest's process (not in the forked child, where an import could wait on a
    lock another thread held at the fork); None off Linux."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


BACKGROUND_NICE = 19
"""The nice value of the background workflows: the tests in the foreground run one at a time, so they are the
session's critical path, and the background ones fill whatever core they leave (on the local SLURM cluster too:
scripts/slurm-local.sh propagates a submitter's nice value to its jobs). Scheduling only: no result depends on it."""


def as_a_background_process(prctl=_prctl()) -> None:
    """In a background process before it starts Snakemake: SIGINT acts (a shell starts background jobs with it
    ignored, and the child would inherit that), and the kernel sends SIGINT when pytest dies, however it dies, so
    Snakemake stops its jobs, on a SLURM cluster too (PR_SET_PDEATHSIG, Linux; elsewhere pytest_sessionfinish's
    stop remains). It runs at :data:`BACKGROUND_NICE`."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if prctl is not None:
        prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG = 1
    os.nice(BACKGROUND_NICE)


def stop_process(proc: subprocess.Popen | None, interrupted: bool = False) -> None:
    """End a background Snakemake process, with its jobs (Snakemake stops or cancels them on SIGINT).
    ``interrupted``: a Ctrl-C in the terminal has sent it SIGINT already (it shares pytest's process group), so it
    gets time to finish that first; otherwise (``-x``, a failed wait) SIGINT now. SIGKILL two minutes later."""
    if proc is None or proc.poll() is not None:
        return
    if not interrupted:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        if interrupted:  # the terminal's SIGINT did not reach it, or did not end it
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Background:
    """A session workflow (one Snakemake process), or one test's own long ``python -m benchmark`` process, started
    when collection ends (:func:`pytest_collection_finish`), so that it overlaps the tests that need no workflow,
    which mostly use one core and run first (:func:`pytest_collection_modifyitems`); the function that returns its
    result waits for it. Its output goes to ``log`` (its standard error too, unless ``stderr`` names a file). The
    same command, run the same way: only when it starts changes."""

    def __init__(self, what: str, cmd: list[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, stderr: Path | None = None) -> None:
        self.what, self.cmd, self.log, self.stderr = what, cmd, log, stderr
        with log.open("w") as out, (stderr.open("w") if stderr else contextlib.nullcontext()) as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err or subprocess.STDOUT, env=env, cwd=cwd,
                                         preexec_fn=as_a_background_process)
        self.started = time.monotonic()

    def wait(self, timeout: float = WORKFLOW_TIMEOUT) -> str:
        """Its log once it has finished; an AssertionError with the log's end if it failed or ran out of time."""
        try:
            code = self.proc.wait(timeout=max(1.0, timeout - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.what} took more than {timeout} s; the end of its log:\n"
                                 f"{self.log.read_text()[-6000:]}") from None
        text = self.log.read_text()
        if code != 0:
            err = self.stderr.read_text() if self.stderr else ""
            raise AssertionError(f"{self.what} failed ({code}): {' '.join(self.cmd)}\n{text[-3000:]}\n{err[-3000:]}")
        return text

    def stop(self, interrupted: bool = False) -> None:
        stop_process(self.proc, interrupted)


BACKGROUND: dict[str, Background] = {}
"""The session's background workflows by name (``smoke``: tests/test_workflow.py, ``tiny``: above, ``declared``:
tests/test_declared_data.py)."""


def start_process(name: str, what: str, args: Callable[[Path], list[str]], env: dict[str, str]) -> None:
    """Start ``python -m benchmark ARGS`` in the background as :data:`BACKGROUND` ``[name]`` (once a session), from
    the checkout, in a temporary folder of its own (``.folder``; ``args(folder)`` gives the arguments), its standard
    output in ``stdout.log`` and its standard error in ``stderr.log`` there (:data:`PROCESS_STARTS`)."""
    if name in BACKGROUND:
        return
    folder = Path(tempfile.mkdtemp(prefix=f"sfprompt-test-{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    BACKGROUND[name] = Background(what, [sys.executable, "-m", "benchmark", *args(folder)], folder / "stdout.log",
                                  env=env, cwd=ROOT, stderr=folder / "stderr.log")
    BACKGROUND[name].folder = folder


# ----------------------------------------------------------------------------------------------------------
# the tests' own `python -m benchmark` processes: one fork server per session

_SERVERS: dict[str, SimpleNamespace] = {}
"""The session's fork servers by the fingerprint of their environment: ``handle`` (None where none came up) and
``usage`` (its jobs file)."""


def _server_env(extra: dict[str, str]) -> tuple[dict[str, str], str]:
    """``os.environ`` plus ``extra`` without a server's socket, and the key of its server in :data:`_SERVERS`."""
    env = {k: v for k, v in {**os.environ, **extra}.items() if k != prefork.SOCKET_ENV}
    return env, json.dumps(prefork.fingerprint(env), sort_keys=True)


CLI_ENV = {"PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
"""What a test's ``python -m benchmark`` adds to ``os.environ``: no warnings on its stderr, and this checkout's
package first on the path (so a job started outside the checkout runs this code). One environment for
tests/test_run.py's ``cli``, tests/test_prefork.py and tests/test_extending.py, so one session server serves them."""


def spawn_server(**extra: str) -> SimpleNamespace:
    """The session's fork server for ``os.environ`` plus ``extra`` (:data:`_SERVERS`), started now, without
    waiting for its imports, if it was not started yet. :func:`served_env` waits for it."""
    env, key = _server_env(extra)
    if key not in _SERVERS:
        folder = Path(tempfile.mkdtemp(prefix="sfprompt-test-prefork-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        usage = folder / prefork.USAGE_FILE
        _SERVERS[key] = SimpleNamespace(handle=prefork.spawn(env=env, log=folder / "prefork.log", usage=usage),
                                        usage=usage, ready=False)
    return _SERVERS[key]


def served_env(**extra: str) -> dict[str, str]:
    """The environment for a test's ``python -m benchmark`` process: ``os.environ`` plus ``extra``, and the socket of
    a fork server (benchmark/prefork.py, as a local workflow starts one) that this session started with exactly that
    environment. A heavy verb (``train``, ``tune``, ``accounting``...) then runs in a fork of a process that imported
    torch, timm, pandas and the rest once per session, not once per process (~4-5 s each, about 25 processes a
    session: tests/test_run.py's ``cli``). Its files and exit status are those of a process of its own
    (tests/test_prefork.py compares them); tests about a user's plain process (no warning printed, the exit status
    of a real process, a killed run) start theirs without this. ``SFPROMPT_PREFORK=0``, or a server that does not
    come up: the plain environment, and each process imports for itself. Each server logs to ``prefork.log`` and
    records its jobs in ``prefork-jobs.tsv`` (:func:`served_jobs`), in a temporary folder of its own. The server
    for :data:`CLI_ENV` is started when collection ends (:func:`pytest_collection_finish`), so its imports overlap
    the first tests; any other on first use."""
    env, _ = _server_env(extra)
    server = spawn_server(**extra)
    if server.handle is not None and not server.ready:
        server.ready = prefork.ready(server.handle)  # stopped if it did not come up
        if not server.ready:
            server.handle = None
    return env if server.handle is None else {**env, prefork.SOCKET_ENV: server.handle.socket}


def served_handle(**extra: str) -> prefork.Handle | None:
    """The session's server for ``served_env(**extra)``, ready (None where none came up)."""
    served_env(**extra)
    return _SERVERS[_server_env(extra)[1]].handle


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


WORKFLOW_FIXTURES = {"smoke_results", "tiny_results", "declared_workflow", "cluster", "cluster_tiny",
                     "cluster_cancelled"}
BACKGROUND_STARTS = {"smoke_results": "tests.test_workflow:start_smoke_workflow",
                     "tiny_results": "tests.conftest:start_tiny_workflow",
                     "declared_workflow": "tests.test_declared_data:start_declared_workflow"}
"""The session workflows that start in the background when a selected test uses their fixture (the SLURM runs:
tests/test_cluster.py's ``start_background``)."""
WORKFLOW_MODULES = {"test_cluster.py"}  # calls smoke_workflow()/tiny_workflow() outside fixtures too
PROCESS_STARTS = {"clean_train_run": "tests.test_quiet:start_clean_train_run",
                  "paper_accounting_cli": "tests.test_run:start_paper_accounting_cli"}
"""Fixtures whose test reads one long ``python -m benchmark`` process of its own (20-55 s each in CI runs; plain
processes: the quiet test's subject is one, and the accounting verb starts before the server is up): the process
starts in the background with the workflows, and the test runs with the workflows' tests, when it has long
finished. Under pytest-xdist, or
for a test run alone, the fixture runs it on first use."""
CLI_SERVER_MODULES = {"test_run.py", "test_tuning.py", "test_prefork.py", "test_extending.py"}
"""Modules whose tests run ``python -m benchmark`` in the session's server for :data:`CLI_ENV`: where one is
selected, that server starts importing when collection ends (elsewhere: on first use, which waits ~8 s)."""


def _reads_a_workflow(item) -> bool:
    return bool(WORKFLOW_FIXTURES & set(getattr(item, "fixturenames", ()))) or item.path.name in WORKFLOW_MODULES


def _runs_late(item) -> bool:
    """A test that reads a session workflow or a background process of its own (:data:`PROCESS_STARTS`)."""
    return _reads_a_workflow(item) or bool(set(PROCESS_STARTS) & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(config, items):
    """Every test that reads a session workflow (or the SLURM cluster) joins the ``workflows`` group: with
    ``--dist loadgroup`` one worker runs them all, so each workflow runs once (a session fixture runs once per
    worker). Without xdist the marker does nothing.

    Order (stable: each group keeps the collected order): first the tests that read no session workflow, then those
    that do (and those that read a process of :data:`PROCESS_STARTS`), then the SLURM tests. The workflows start in
    the background when collection ends (:func:`pytest_collection_finish`), and the later a test waits for one, the
    more of its time the other tests fill. A module whose tests fall in two groups sets its module fixtures up once
    per group (none of those is used on both sides but ``own_registry``, a snapshot of the registry)."""
    for item in items:
        if _reads_a_workflow(item):
            item.add_marker(pytest.mark.xdist_group("workflows"))
    items.sort(key=lambda item: 2 if item.path.name == "test_cluster.py" else int(_runs_late(item)))


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
    """Start in the background the session workflows the selected tests read (:class:`Background`): those of
    :data:`BACKGROUND_STARTS` (smoke, tiny, declared data), the tests' own long processes of
    :data:`PROCESS_STARTS`, and the SLURM runs of tests/test_cluster.py (the tiny run, the cancelled-job run) where
    the local cluster is up; and spawn the fork server of :data:`CLI_ENV` where a test that uses it is selected.
    Not under pytest-xdist (the fixtures then run them on the worker of the ``workflows`` group) or
    ``--collect-only``."""
    if session.config.option.collectonly or "PYTEST_XDIST_WORKER" in os.environ:
        return
    if any(item.path.name in CLI_SERVER_MODULES for item in session.items):
        spawn_server(**CLI_ENV)
    fixtures = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    for fixture, start in {**BACKGROUND_STARTS, **PROCESS_STARTS}.items():
        if fixture in fixtures:
            module, _, function = start.partition(":")
            getattr(importlib.import_module(module), function)()
    module, fixtures = _background_module(session)
    if module is not None:
        module.start_background(fixtures)


def pytest_sessionfinish(session, exitstatus):
    """The session's fork servers (:func:`served_env`) are stopped. A background workflow the session did not wait
    for (interrupted, or ``-x`` stopped it first) is stopped with its jobs, not left running or on the cluster."""
    for server in _SERVERS.values():
        prefork.stop(server.handle)
    _SERVERS.clear()
    interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
    for run in BACKGROUND.values():
        run.stop(interrupted)
    module, _ = _background_module(session)
    if module is not None:
        module.stop_background(interrupted)
