# Load and validate the workflow config (workflow/schemas/config.schema.yaml), expand the run grid, and make
# `python -m benchmark` in every job mean this checkout under the interpreter that runs Snakemake.
import os
import re
import sys

from snakemake.exceptions import WorkflowError

sys.path.insert(0, workflow.basedir)

from benchmark import prefork
from benchmark.errors import ConfigError
from benchmark.workflow.names import RULES
from benchmark.workflow.grid import load_workflow, prepare_jobs

prepare_jobs(workflow.basedir, sys.executable)
try:
    WF = load_workflow(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
except ConfigError as exc:
    raise WorkflowError(f"error: {exc}") from None

# Local runs never start more threads than this host has cores, whatever --cores says: each job's threads count
# against the `cpus` resource (raise it with --resources cpus=N). Cluster executors are not limited here. The
# executor is chosen after this file is parsed (`workflow.local_exec` is always true at this point, which capped a
# SLURM run at this host's cores); Snakemake leaves `cores` unset for a cluster executor, whose --jobs counts jobs.
if workflow.resource_settings.cores is not None and "cpus" not in workflow.global_resources:
    workflow.register_resource("cpus", os.cpu_count())

R = WF.results
RES = {rule: WF.resources(rule) for rule in RULES}
ENV = "../../environment.yml"


wildcard_constraints:
    backbone=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    partition=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    variant=r"[A-Za-z0-9][A-Za-z0-9_.@-]*",  # METHOD@PCT: a backbone-strength point (backbones/B@PCT)
    seed=r"\d+",
    split=r"h\d+t\d+",


localrules:
    all,
    runs,
    partitions,
    backbones,
    accounting,
    privacy,
    grid,
    manifest,


# The fork server (benchmark/prefork.py): torch, timm and pandas imported once per local run, not once per job
# (3-5 s each); every job stays its own Snakemake job and process, with the same result files. Local execution
# only; SFPROMPT_PREFORK=0 turns it off. Started with the environment Snakemake gives a train job (its threads).
_PREFORK = {}


onstart:
    if workflow.local_exec:
        _PREFORK["server"] = prefork.start(
            log=f"{R}/logs/prefork.log", usage=f"{R}/logs/{prefork.USAGE_FILE}",
            env=prefork.job_env(min(RES["train"]["threads"], workflow.resource_settings.cores or 1)))


onsuccess:
    prefork.stop(_PREFORK.pop("server", None))


onerror:
    prefork.stop(_PREFORK.pop("server", None))
