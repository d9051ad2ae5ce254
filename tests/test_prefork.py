"""The fork server (benchmark/prefork.py): a job run in its child equals the job run in its own process, byte for
byte; it sees the suite's code as it is on disk; a job of another environment, or whose process dies, is handled."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from benchmark import prefork
from tests.conftest import CLI_ENV, served_env, served_handle, served_jobs
from tests.test_run import cli, write_cfg

ROOT = Path(__file__).resolve().parents[1]
LIGHT = ("numpy", "yaml")  # a quick server for the plumbing tests; what it preloads changes no result
pytestmark = pytest.mark.skipif(not prefork.enabled({}), reason="the fork server needs Linux (pidfds, fd passing)")


@pytest.fixture(scope="module")
def server():
    """The session's fork server for tests/test_run.py's ``cli`` (tests/conftest.py: ``served_env``), and the
    environment it serves. Any environment does for what these tests compare (a job in the server's child against
    the same job in its own process, with the same environment), and sharing it saves a second import of torch,
    timm and the rest (8-15 s); each test leaves it as it found it (no child left: checked where a test could
    leave one)."""
    handle = served_handle(**CLI_ENV)
    assert handle is not None, "the fork server did not come up"
    yield handle, served_env(**CLI_ENV)
    assert prefork.SOCKET_ENV not in os.environ


def children(handle) -> list[psutil.Process]:
    return psutil.Process(handle.proc.pid).children()


def job(env: dict, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_train_run_in_the_servers_child_equals_the_run_in_its_own_process(tmp_path, server):
    handle, env = server
    cfg = write_cfg(tmp_path, method="sfprompt")
    own = job({k: v for k, v in env.items() if k != prefork.SOCKET_ENV}, "train", "-c", str(cfg), "--out",
              str(tmp_path / "own"))
    forked = job(env, "train", "-c", str(cfg), "--out", "forked", cwd=tmp_path)  # relative: the job's folder
    assert own.returncode == 0 and forked.returncode == 0, forked.stderr[-2000:]
    assert "prefork:" not in forked.stderr, forked.stderr  # accepted, not sent back to run itself
    # the child wrote to the job's own stdout (the final-accuracy line), not to the server's
    assert "final test accuracy" in forked.stdout, forked.stdout
    for name in ("metrics.csv", "comm.csv", "flops.csv", "config.resolved.yaml", "head_state.safetensors"):
        assert (tmp_path / "own" / name).read_bytes() == (tmp_path / "forked" / name).read_bytes(), name
    a, b = (json.loads((tmp_path / d / "env.json").read_text()) for d in ("own", "forked"))
    for doc in (a, b):
        doc.pop("wall_seconds_this_process")
    assert a == b  # the same numerics fingerprint (thread variables included), packages and data digest
    assert children(handle) == []  # the child was reaped


def test_an_error_keeps_its_exit_status_and_its_one_line(server):
    _, env = server
    proc = job(env, "train", "--set", "bogus.key=1", "--out", "unused")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: unknown config key 'bogus'; valid keys in top level: seed, device, threads, keep_freed_memory, "
        "data, partition, model, train, pretrain, method_params"]


def test_a_job_in_another_environment_runs_in_its_own_process_and_says_why(server):
    _, env = server
    proc = job({**env, "ATEN_CPU_CAPABILITY": "default"}, "train", "--set", "bogus.key=1", "--out", "unused")
    assert proc.returncode == 2
    first, second = proc.stderr.strip().splitlines()
    assert first == ("prefork: running in this process (environment differs: $ATEN_CPU_CAPABILITY='default' != "
                     "the server's None)")
    assert second.startswith("error: unknown config key 'bogus'")


def test_the_child_imports_the_suites_code_from_disk_as_the_job_finds_it(tmp_path, server):
    """An edit between two jobs is seen: the server holds none of the suite's modules but its own."""
    _, env = server
    for pkg in ("benchmark", "baselines"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp_path / "benchmark" / "config.py"
    before = job(env, "train", "--set", "bogus.key=1", "--out", "unused", cwd=tmp_path)
    assert "error: unknown config key 'bogus'" in before.stderr, before.stderr
    config.write_text(config.read_text().replace("unknown config key", "no such config key"))
    after = job(env, "train", "--set", "bogus.key=1", "--out", "unused", cwd=tmp_path)
    assert "prefork:" not in after.stderr
    assert "error: no such config key 'bogus'" in after.stderr, after.stderr


def test_a_job_whose_process_is_killed_takes_its_child_with_it(tmp_path, server):
    handle, env = server
    cfg = write_cfg(tmp_path, method="fedavg", rounds=500)
    proc = subprocess.Popen([sys.executable, "-m", "benchmark", "train", "-c", str(cfg), "--out", str(tmp_path / "r"),
                             "-q"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not children(handle):
        assert time.monotonic() < deadline and proc.poll() is None, "the job never reached the server"
        time.sleep(0.05)
    child = children(handle)[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    child.wait(timeout=30)  # killed by the server, not left training
    deadline = time.monotonic() + 30
    while children(handle):
        assert time.monotonic() < deadline, "the server kept the killed job's child"
        time.sleep(0.05)
    assert handle.proc.poll() is None  # the server itself serves on


def test_the_server_ends_with_the_process_that_started_it(tmp_path):
    """Snakemake killed outright (no onerror hook) leaves no server behind."""
    code = ("import sys; from benchmark import prefork; h = prefork.start(preload=%r); "
            "print(h.proc.pid, h.socket, flush=True)" % (LIGHT,))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={k: v for k, v in os.environ.items() if k != prefork.SOCKET_ENV})
    pid, sock = out.stdout.split()
    deadline = time.monotonic() + 30
    while psutil.pid_exists(int(pid)) and psutil.Process(int(pid)).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the server outlived its owner"
        time.sleep(0.1)
    assert not Path(sock).exists() and not Path(sock).parent.exists()


def test_no_server_where_it_is_switched_off_or_on_a_cluster_node(monkeypatch):
    assert prefork.start(env={**os.environ, prefork.SWITCH_ENV: "0"}) is None
    monkeypatch.setenv(prefork.SOCKET_ENV, "/nonexistent/socket")
    assert prefork.delegate([sys.argv[0], "train"]) is None  # no server there: the job runs itself
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    assert prefork.delegate([sys.argv[0], "train"]) is None
    assert prefork.delegate([sys.argv[0], "data"]) is None  # a verb no workflow job calls never goes to it


def test_every_workflow_jobs_verb_goes_to_the_server():
    """Each rule's ``python -m benchmark <verb>`` is a heavy verb, so no local job pays the imports itself (the
    ``grid`` job did: building the workflow imports the method classes, hence torch)."""
    verbs = set()
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):
        verbs |= set(re.findall(r"python -m benchmark (\w+)", rules.read_text()))
    assert {"train", "tune", "report", "grid"} <= verbs
    assert verbs <= prefork.HEAVY_VERBS, verbs - prefork.HEAVY_VERBS


def test_fingerprints_name_their_first_difference():
    a = prefork.fingerprint({"OMP_NUM_THREADS": "1", "HOME": "/root"})
    assert prefork.fingerprint_difference(a, prefork.fingerprint({"OMP_NUM_THREADS": "1", "HOME": "/x"})) is None
    assert prefork.fingerprint_difference(a, prefork.fingerprint({"OMP_NUM_THREADS": "2"})) == (
        "$OMP_NUM_THREADS='2' != the server's '1'")
    assert prefork.job_env(3, {})["MKL_NUM_THREADS"] == "3"


def test_a_package_that_is_not_installed_is_not_preloaded_and_the_server_still_serves(tmp_path, monkeypatch):
    monkeypatch.delenv(prefork.SOCKET_ENV, raising=False)
    log = tmp_path / "prefork.log"
    handle = prefork.start(log=log, preload=(*LIGHT, "no_such_package_for_prefork"), env=dict(os.environ))
    try:
        assert handle is not None and Path(handle.socket).exists()
        text = log.read_text()
        assert "prefork: not preloading no_such_package_for_prefork" in text
        assert "prefork: imported numpy, yaml in" in text
    finally:
        prefork.stop(handle)


def test_the_server_records_each_jobs_exact_usage_by_its_log(tmp_path, monkeypatch):
    """What Snakemake's benchmark files cannot see (the job's own process only waits): the child's CPU seconds and
    peak memory from wait4, one row per job, keyed by the file its output went to (``costs`` reads it)."""
    monkeypatch.delenv(prefork.SOCKET_ENV, raising=False)
    usage = tmp_path / "logs" / prefork.USAGE_FILE
    env = prefork.job_env(1, dict(os.environ))
    handle = prefork.start(preload=LIGHT, env=env, usage=usage)
    try:
        log = tmp_path / "logs" / "train" / "x.log"
        log.parent.mkdir(parents=True)
        with open(log, "w") as out:
            code = subprocess.run([sys.executable, "-m", "benchmark", "train", "--set", "bogus.key=1", "--out", "u"],
                                  cwd=ROOT, env={**env, prefork.SOCKET_ENV: handle.socket}, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=300).returncode
    finally:
        prefork.stop(handle)
    assert code == 2 and log.read_text().startswith("error: unknown config key 'bogus'")
    rows = [line.split("\t") for line in usage.read_text().splitlines()]
    assert rows[0] == list(prefork.USAGE_COLUMNS) and len(rows) == 2
    row = dict(zip(rows[0], rows[1]))
    assert row["stdout"] == str(log) and row["verb"] == "train" and row["exit"] == "2"
    assert float(row["cpu_s"]) > 0 and float(row["max_rss_mb"]) > 0 and float(row["wall_s"]) > 0


def test_an_event_for_a_job_already_gone_is_ignored(tmp_path):
    """A child's exit and its job's connection closing can be ready in one select: the second finds the job gone.
    Handling it as a live job would wait for a child that was already reaped and bring the server down."""
    server = prefork.Server(str(tmp_path / "socket"), os.getpid(), prefork.fingerprint({}))
    try:
        for kind in ("child", "conn"):
            server._dispatch(kind, 2**22 + 7)  # no such job: nothing happens
        assert server.running and server.jobs == {}
    finally:
        server.listener.close()


@pytest.mark.skipif(not prefork.enabled(), reason="no fork server on this platform (or SFPROMPT_PREFORK=0)")
def test_the_tests_cli_runs_its_heavy_verbs_in_the_sessions_server(tmp_path):
    """tests/test_run.py's ``cli`` (about 25 processes a session) hands its heavy verbs to the session's fork server
    (tests/conftest.py: ``served_env``): a fallback to a process of its own would silently cost ~4-5 s of imports
    a process again (the subset of test_run.py and test_tuning.py that uses it: 237 s without the server)."""
    before = len(served_jobs(**CLI_ENV))
    cli("train", "-c", str(write_cfg(tmp_path, rounds=1)), "--out", str(tmp_path / "r"), "-q")
    jobs = served_jobs(**CLI_ENV)
    assert len(jobs) == before + 1, jobs
    assert (jobs[-1]["verb"], jobs[-1]["exit"]) == ("train", "0")
    assert (tmp_path / "r" / "metrics.csv").exists()
