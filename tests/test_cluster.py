"""profiles/slurm on a real SLURM scheduler: the single-node cluster ``bash scripts/slurm-local.sh up`` starts.

The tiny workflow (tests/conftest.py: the smoke profile cut to one cell, one seed and one round, with every rule
but pre-training) runs through ``snakemake --profile profiles/slurm --workflow-profile profiles/slurm-local`` (the
local cluster's account and partition; nothing else changes) and is checked against SLURM's own accounting
(``sacct``): every job ran as a SLURM job and completed, each requested its rule's threads, memory and run time,
and the tables equal the session's local ``--cores 2`` run of the same profile. A training job cancelled
(``scancel``) after its first checkpoint is retried by Snakemake and resumes from the checkpoint, with results
byte-identical to an uninterrupted run; a GPU rule's generated ``sbatch`` call requests ``--gpus`` (checked on the
submission: this cluster has no GPU, so SLURM rejects it).

Skipped, with the reason, unless that cluster is up (``.ci/run`` starts it when the machine allows): the tests
never submit to another SLURM cluster the machine may belong to.
"""

from __future__ import annotations

import atexit
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from benchmark.workflow.grid import load_workflow, load_workflow_file
from benchmark.workflow.names import RULES
from tests.conftest import Background, as_a_background_process, stop_process, tiny_files, tiny_workflow
from tests.test_workflow import ROOT, snakemake_cmd

CLUSTER, ACCOUNT, PARTITION = "sfb", "sfb", "local"  # scripts/slurm-local.sh
PROFILE_ARGS = ("--profile", str(ROOT / "profiles" / "slurm"), "--workflow-profile", str(ROOT / "profiles" / "slurm-local"),
                # the plugin waits 40 s before its first status check and after each check that saw no job end,
                # then 10 s longer each time: right for a shared cluster, but most of these tests' time on the
                # one-node cluster (each of the tiny DAG's levels waited >= 40 s). How often it polls changes
                # no job; the profile keeps the plugin's default.
                "--slurm-init-seconds-before-status-checks", "2")
RESOURCE_KEY = {"account": "accounting", "tables": "report", "figures": "report"}
"""The workflow config's ``resources`` entry of each rule whose entry is not named like the rule."""
TABLE_COLUMNS = re.compile(r"acc|comm|byte|flop", re.I)
"""Table columns that must not depend on where the jobs ran: accuracy, bytes (comm MB) and FLOPs."""


def _run(*cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def cluster_unavailable() -> str | None:
    """Why the local cluster cannot be used, or None."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[cluster]')"
    missing = [c for c in ("sbatch", "sacct", "scontrol", "scancel", "squeue") if shutil.which(c) is None]
    if missing:
        return f"no SLURM client tools ({', '.join(missing)}); run `bash scripts/slurm-local.sh up` as root"
    try:
        config = _run("scontrol", "show", "config", timeout=20)
    except subprocess.TimeoutExpired:
        return "scontrol timed out: no SLURM controller answers"
    name = re.search(r"^ClusterName\s*=\s*(\S+)", config.stdout, re.M)
    if config.returncode != 0 or not name:
        return "no SLURM controller answers; run `bash scripts/slurm-local.sh up` as root"
    if name.group(1) != CLUSTER:
        return f"the SLURM cluster here is {name.group(1)!r}, not the local {CLUSTER!r} of scripts/slurm-local.sh"
    state = _run("sinfo", "-h", "-p", PARTITION, "-o", "%a %T").stdout.split()
    if not state or state[0] != "up" or not re.match(r"idle|mixed|alloc", state[1]):
        return f"partition {PARTITION!r} of the local cluster is not up ({' '.join(state) or 'absent'})"
    return None


def snakemake(work: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    proc.log = proc.stdout + proc.stderr
    (work / "snakemake.out").write_text(proc.log)
    return proc


def run_id(log: str) -> str:
    m = re.search(r"SLURM run ID: (\S+)", log)
    assert m, log[-3000:]
    return m.group(1)


def sacct(uuid: str) -> pd.DataFrame:
    """SLURM's accounting record of every job of one Snakemake run (jobs are named by the run's uuid)."""
    fields = ["JobIDRaw", "State", "Comment", "ReqCPUS", "ReqMem", "Timelimit", "ReqTRES"]
    out = _run("sacct", "-X", "-P", "--noheader", "--starttime", "now-1days", "--name", uuid,
               "--format", ",".join(f"{f}%400" for f in fields)).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    frame = pd.DataFrame(rows, columns=fields)
    frame["rule"] = frame.Comment.str.extract(r"^rule_(\w+?)(?:_wildcards_|$)", expand=False)
    return frame


def minutes(limit: str) -> int:
    """A SLURM time limit ``[D-]HH:MM:SS`` in minutes."""
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return (int(days or 0) * 24 + h) * 60 + m + (s > 0)


def submitted_jobs(log: str) -> dict[str, dict[str, str]]:
    """{SLURM job id: Snakemake's view of the job (rule, threads, resources)} from a Snakemake log."""
    blocks = {}
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", log):
        head = re.search(r"^(local)?rule (\w+):", block, re.M)
        jobid = re.search(r"^\s+jobid: (\d+)", block, re.M)
        if head and jobid and not head.group(1):
            res = re.search(r"^\s+resources: (.*)$", block, re.M)
            threads = re.search(r"^\s+threads: (\d+)", block, re.M)
            blocks[jobid.group(1)] = {"rule": head.group(2), "threads": threads.group(1) if threads else "1",
                                      **dict(kv.split("=", 1) for kv in res.group(1).split(", ") if "=" in kv)}
    out = {}
    for job, slurm_id in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log):
        out[slurm_id] = blocks[job]
    return out


def seed_inputs(src: Path, dst: Path) -> None:
    """Copy what training reads (decoded data, partitions; the tiny profile's backbone is built from scratch) from a
    finished run, times kept."""
    for sub in ("cache", "partitions"):
        shutil.copytree(src / sub, dst / sub)


def test_local_cluster_profile_sets_only_account_and_partition():
    """profiles/slurm runs unchanged on the local cluster but for its account and partitions: the workflow profile
    replaces whole keys, so it must cover every rule profiles/slurm names and set nothing else."""
    main = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    local = yaml.safe_load((ROOT / "profiles" / "slurm-local" / "config.yaml").read_text())
    assert set(local) == {"default-resources", "set-resources"}
    assert local["default-resources"] == {"slurm_account": ACCOUNT, "slurm_partition": PARTITION}
    assert set(main["default-resources"]) == set(local["default-resources"])
    assert set(local["set-resources"]) == set(main["set-resources"])
    for rule, res in main["set-resources"].items():
        assert set(res) == {"slurm_partition"} == set(local["set-resources"][rule]), rule
        assert local["set-resources"][rule]["slurm_partition"] == PARTITION


# ----------------------------------------------------------------------------------------------------------
# on the cluster

needs_cluster = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster():
    reason = cluster_unavailable()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")


_BACKGROUND: dict[str, Background | SimpleNamespace] = {}
TINY_TIMEOUT = 1500
"""Seconds the SLURM tiny run may take from its start."""


def start_background(fixtures: set[str]) -> None:
    """Start, in the background, the cluster runs the selected tests read (``fixtures``: the fixture names they
    use), where the local cluster is up: the SLURM tiny run (``cluster_tiny``) and the cancelled-job run
    (``cluster_cancelled``). tests/conftest.py calls this when collection ends, so their jobs and the SLURM plugin's
    waits between status checks overlap the other tests (which mostly use one core) instead of following them; the
    fixtures wait for them. Under pytest-xdist each fixture starts its own run."""
    if "cluster_tiny" in fixtures:
        start_tiny_run()
    if "cluster_cancelled" in fixtures:
        start_cancelled_run()


def stop_background(interrupted: bool = False) -> None:
    """End the background runs the session did not wait for, with their SLURM jobs (:func:`stop_tiny_run`)."""
    stop_tiny_run(interrupted)
    stop_cancelled_run(interrupted)


def start_tiny_run() -> None:
    """Start the tiny workflow through profiles/slurm in the background (tests/conftest.py's ``Background``), once
    per session, where the local cluster is up (:func:`start_background`); ``cluster_tiny`` waits for it."""
    if "tiny" in _BACKGROUND or cluster_unavailable():
        return
    work = Path(tempfile.mkdtemp(prefix="sfprompt-slurm-tiny-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    cmd = snakemake_cmd("all", *PROFILE_ARGS, "--configfile", str(tiny_files().profile), "--config",
                        f"results={work / 'results'}", workdir=work)
    _BACKGROUND["tiny"] = Background("the SLURM tiny run", cmd, work / "snakemake.out")
    _BACKGROUND["tiny"].work = work


def stop_tiny_run(interrupted: bool = False) -> None:
    """End a SLURM tiny run the session no longer waits for, with its SLURM jobs (Snakemake cancels them on SIGINT)."""
    if "tiny" in _BACKGROUND:
        _BACKGROUND["tiny"].stop(interrupted)


@pytest.fixture(scope="module")
def cluster_tiny(cluster):
    """The tiny workflow run through profiles/slurm: (working dir, results, Snakemake log). Started when collection
    ended (:func:`start_tiny_run`), or here."""
    start_tiny_run()
    run = _BACKGROUND["tiny"]
    log = run.wait(TINY_TIMEOUT)
    return run.work, run.work / "results", log


@needs_cluster
def test_every_job_ran_as_a_completed_slurm_job(cluster_tiny):
    work, results, log = cluster_tiny
    jobs = sacct(run_id(log))
    submitted = submitted_jobs(log)
    ran_remote = len(re.findall(r"^rule \w+:", log, re.M))  # localrules (all, grid, ...) print 'localrule'
    assert ran_remote > 0 and len(submitted) == ran_remote
    assert sorted(jobs.JobIDRaw) == sorted(submitted), "sacct lists exactly the jobs Snakemake submitted"
    assert (jobs.State == "COMPLETED").all(), jobs[jobs.State != "COMPLETED"]
    assert sorted(jobs.rule) == sorted(j["rule"] for j in submitted.values())
    # the cluster run is not capped at this host's cores (the `cpus` resource of local runs)
    provided = re.search(r"^Provided resources: (.*)$", log, re.M)
    assert provided is None or "cpus=" not in provided.group(1), provided.group(0)


@needs_cluster
def test_sbatch_requests_are_the_rules_resources(cluster_tiny):
    """What SLURM granted each job (sacct) is what its rule asks for in the workflow config's resources."""
    work, results, log = cluster_tiny
    wf = load_workflow(tiny_workflow().raw)
    jobs = sacct(run_id(log))
    submitted = submitted_jobs(log)
    for job in jobs.itertuples():
        seen = submitted[job.JobIDRaw]
        # Snakemake's job == SLURM's job: threads -> --cpus-per-task, mem_mb -> --mem, runtime -> -t, no GPU
        assert int(job.ReqCPUS) == int(seen["threads"]), job
        assert job.ReqMem == f"{seen['mem_mb']}M", job
        assert minutes(job.Timelimit) == int(seen["runtime"]), job
        assert "gpu" not in job.ReqTRES and int(seen.get("gpu", 0)) == 0, job
        # ... and the rule's job is what the workflow config declares (rules with their own resources entry)
        key = RESOURCE_KEY.get(job.rule, job.rule)
        if key in RULES:
            want = wf.resources(key)
            assert (int(job.ReqCPUS), job.ReqMem, minutes(job.Timelimit)) == (
                want["threads"], f"{want['mem_mb']}M", want["runtime"]), (job.rule, want)


def numeric_columns(table: Path) -> pd.DataFrame:
    frame = pd.read_csv(table)
    cols = [c for c in frame.columns if TABLE_COLUMNS.search(c) and pd.api.types.is_numeric_dtype(frame[c])]
    return frame[cols]


@needs_cluster
def test_tables_equal_a_local_run(cluster_tiny):
    work, results, log = cluster_tiny
    local = tiny_workflow().results
    tables = sorted(p.name for p in (results / "tables").glob("*.csv"))
    assert tables and tables == sorted(p.name for p in (local / "tables").glob("*.csv"))
    compared = []
    for name in tables:
        ours, theirs = numeric_columns(results / "tables" / name), numeric_columns(local / "tables" / name)
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True, obj=name)
        compared += list(ours.columns)
    for kind in ("acc", "comm", "flop"):  # not vacuous: each kind of number was compared somewhere
        assert any(kind in c.lower() for c in compared), (kind, compared)


CANCELLED_TIMEOUT = 1500
"""Seconds the cancelled-job run (reference and cluster run together) may take from its start."""


def start_cancelled_run() -> None:
    """Start the cancelled-job run in a background thread, once per session, where the local cluster is up
    (:func:`start_background`): an uninterrupted local reference of one SFPrompt run (the tiny profile at 8 rounds,
    long enough to be cancelled between checkpoints), then the same run on the cluster, its training job cancelled
    (``scancel``) after its first checkpoint. ``cluster_cancelled`` waits for it; the test checks what it left.
    Most of its time is the SLURM plugin's waits between status checks, which the other tests fill."""
    if "cancelled" in _BACKGROUND or cluster_unavailable():
        return
    base = Path(tempfile.mkdtemp(prefix="sfprompt-slurm-cancelled-"))
    atexit.register(shutil.rmtree, base, ignore_errors=True)
    state = SimpleNamespace(base=base, proc=None, error=None, result=None, stopping=False, started=time.monotonic())
    state.thread = threading.Thread(target=_cancelled_run, args=(state,), name="slurm-cancelled", daemon=True)
    _BACKGROUND["cancelled"] = state
    state.thread.start()


def _child(state: SimpleNamespace, cmd: list[str], log: Path) -> subprocess.Popen:
    """Start one Snakemake process of the cancelled-job run (the one :func:`stop_cancelled_run` would stop)."""
    if state.stopping:
        raise RuntimeError("the session stopped the cancelled-job run")
    with log.open("w") as out:
        state.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                      preexec_fn=as_a_background_process)
    return state.proc


def _cancelled_run(state: SimpleNamespace) -> None:
    """The body of :func:`start_cancelled_run` (a thread): what the test reads goes to ``state.result``, an
    exception to ``state.error``."""
    try:
        raw = yaml.safe_load(tiny_files().profile.read_text())
        raw["run"]["train"]["rounds"] = 8  # long enough to be cancelled between checkpoints
        # One folder for both runs: the config hash in metrics.csv covers the paths a run reads.
        cancelled = state.base / "run"
        cancelled.mkdir()
        raw["results"] = str(cancelled / "results")
        config = cancelled / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        # the run's folder from the grid verb, in its own process: loading the profile here would register its
        # method file's class in this process's registry while other tests run (own_registry cannot see a thread)
        grid = subprocess.run([sys.executable, "-m", "benchmark", "grid", "-w", str(config)], capture_output=True,
                              text=True, check=True, cwd=ROOT).stdout
        (folder,) = re.findall(r"^(\S+)  \[method:sfprompt\]$", grid, re.M)
        run_dir = cancelled / "results" / folder
        target = str(run_dir / "metrics.csv")
        smk = [sys.executable, "-m", "snakemake", target, "--snakefile", str(ROOT / "Snakefile"), "--directory",
               str(cancelled), "--configfile", str(config)]

        # uninterrupted, on this machine (with the data, partition and tuning jobs it needs, which the cluster run
        # then finds done); its files are kept aside and the run folder emptied
        reference = _child(state, [*smk, "--cores", "2"], state.base / "reference.out")
        assert reference.wait(timeout=CANCELLED_TIMEOUT) == 0, (state.base / "reference.out").read_text()[-4000:]
        ref_dir = state.base / "reference"
        shutil.move(run_dir, ref_dir)

        # on the cluster, cancelled once
        out = cancelled / "snakemake.out"
        sm = _child(state, [*smk, *PROFILE_ARGS], out)
        deadline = time.time() + 600
        while not (run_dir / "checkpoint.pt").exists():
            assert sm.poll() is None and time.time() < deadline, "the training job ended before its first checkpoint"
            assert not state.stopping, "the session stopped the cancelled-job run"
            time.sleep(0.1)
        uuid = run_id(out.read_text())
        queued = _run("squeue", "-h", "--name", uuid, "-o", "%i|%k").stdout.split()
        (job_id,) = [q.split("|")[0] for q in queued if q.split("|")[1].startswith("rule_train")]
        assert _run("scancel", job_id).returncode == 0
        assert sm.wait(timeout=900) == 0, out.read_text()[-6000:]
        train_log = (cancelled / "results" / "logs" / "train" / f"{Path(folder).relative_to('runs')}.log").read_text()
        state.result = SimpleNamespace(log=out.read_text(), uuid=uuid, job_id=job_id, train_log=train_log,
                                       run_dir=run_dir, ref_dir=ref_dir)
    except BaseException as exc:  # noqa: BLE001 (handed to the test that reads the run)
        state.error = exc
        stop_process(state.proc, interrupted=False)


def stop_cancelled_run(interrupted: bool = False) -> None:
    """End a cancelled-job run the session no longer waits for, with its SLURM jobs."""
    state = _BACKGROUND.get("cancelled")
    if state is None or not state.thread.is_alive():
        return
    state.stopping = True
    stop_process(state.proc, interrupted)
    state.thread.join(timeout=60)


@pytest.fixture(scope="module")
def cluster_cancelled(cluster):
    """The cancelled-job run (:func:`start_cancelled_run`): ``log`` (the cluster run's Snakemake log), ``uuid`` (its
    SLURM run id), ``job_id`` (the cancelled job), ``train_log`` (the run's training log), ``run_dir`` and
    ``ref_dir`` (the resumed run's folder and the uninterrupted reference's)."""
    start_cancelled_run()
    state = _BACKGROUND["cancelled"]
    state.thread.join(timeout=max(1.0, CANCELLED_TIMEOUT - (time.monotonic() - state.started)))
    if state.thread.is_alive():
        stop_cancelled_run()
        pytest.fail(f"the cancelled-job run took more than {CANCELLED_TIMEOUT} s")
    if state.error is not None:
        raise state.error
    return state.result


@needs_cluster
def test_cancelled_training_job_is_retried_and_resumes(cluster_cancelled):
    """scancel a training job after its first checkpoint: Snakemake (retries: 1) resubmits it, the new job
    resumes from the checkpoint, and its result files equal an uninterrupted run's byte for byte."""
    run = cluster_cancelled
    train = sacct(run.uuid).query("rule == 'train'")
    assert list(train.State.str.split().str[0]) == ["CANCELLED", "COMPLETED"], train
    assert train.JobIDRaw.iloc[0] == run.job_id
    resumed = re.search(r"resumed sfprompt from round (\d+)", run.train_log)
    assert resumed and int(resumed.group(1)) >= 1, run.train_log
    assert "Trying to restart job" in run.log
    assert not (run.run_dir / "checkpoint.pt").exists()
    for name in ("metrics.csv", "comm.csv", "flops.csv"):
        assert (run.run_dir / name).read_bytes() == (run.ref_dir / name).read_bytes(), name


@needs_cluster
def test_gpu_rules_request_gpus_in_the_sbatch_call(cluster, tmp_path):
    """A training job whose config asks for a GPU (config/paper.yaml: gpu: 1) is submitted with --gpus=1 and its
    threads, memory and run time. This cluster has no GPU, so SLURM refuses the job and the plugin reports the
    exact sbatch call, which is what is checked (a GPU cluster would run it)."""
    tiny = tiny_workflow()
    results = tiny.results
    raw = yaml.safe_load(tiny.profile.read_text())
    raw["results"] = str(tmp_path / "results")
    raw.pop("tuning", None)  # tune jobs take the train resources; the first GPU job must be a train job
    raw.setdefault("resources", {})["train"] = {"threads": 2, "mem_mb": 1234, "runtime": 7, "gpu": 1}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    seed_inputs(results, tmp_path / "results")
    wf = load_workflow_file(tmp_path / "config.yaml")
    run = next(iter(wf.runs.values()))
    proc = snakemake(tmp_path, wf.path(f"{run.dir}/metrics.csv"), *PROFILE_ARGS, "--retries", "0",
                     "--configfile", str(tmp_path / "config.yaml"))
    assert proc.returncode != 0, "a GPU job cannot run on this cluster"
    calls = re.findall(r"sbatch call:\s*\n\s*(sbatch .*)", proc.log)
    assert len(calls) == 1, proc.log[-4000:]
    call = calls[0]
    assert "rule_train" in call
    for flag in ("--gpus=1", "--cpus-per-task=2", "--mem 1234", "-t 7", f"-A {ACCOUNT}", f"-p {PARTITION}"):
        assert re.search(rf"(^|\s){re.escape(flag)}(\s|$)", call), (flag, call)
    assert "gres" in proc.log.lower()  # SLURM's own refusal: no such generic resource here
