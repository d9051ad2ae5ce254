"""Command line: ``python -m benchmark <verb> ...``; the Snakefile's rules are one call each.

Verbs: ``data`` (describe a dataset), ``cache`` (decode it once), ``partition``, ``pretrain``, ``train``,
``tune`` (choose a learning rate from validation runs: :mod:`benchmark.tuning`),
``accounting`` (per-round FLOPs and bytes without training), ``system`` (time and energy on real devices and
links, calibration: :mod:`benchmark.cli.system`), ``privacy`` (reconstruction attacks on smashed data),
``report`` (tables, figures, manifest), ``compare`` (two results folders: the same choices, verdicts and
accuracies within each other's intervals?),
``grid`` (validate a workflow config, list its runs), ``runconfig`` (one grid run's RunConfig YAML)
and ``costs`` (wall and CPU time per rule of a finished workflow, from Snakemake's job timings).
Any :class:`~benchmark.errors.BenchmarkError` is printed as one line, ``error: ...``, with exit status 2.

The verb table, :data:`VERBS`, names each verb's runner as ``"module:function"`` under :mod:`benchmark.cli`;
:func:`main` imports it with :mod:`importlib` only when that verb runs. This file itself imports argparse and
the standard library only, so ``--help`` and ``data`` never pay for torch (about 3 s): the dependency is stated
here, in the table, and taken on use. Inside a local workflow, a heavy verb
given on the command line runs in a child of the fork server (:mod:`benchmark.prefork`), which imported torch once
for every job; :func:`main` hands it over first and exits with the child's status.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from typing import Callable

from benchmark import prefork
from benchmark.errors import BenchmarkError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

Runner = Callable[[argparse.Namespace], int]
VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {}
"""verb -> (help line, function adding its arguments, runner as ``"module:function"``)."""


def verb(name: str, help: str, args: Callable[[argparse.ArgumentParser], None], runner: str) -> None:
    """Register a verb: its help line, a function adding its arguments, and its runner (``"module:function"``)."""
    VERBS[name] = (help, args, runner)


def load_runner(ref: str) -> Runner:
    module, _, function = ref.partition(":")
    return getattr(importlib.import_module(module), function)


def _with(*adders: Callable[[argparse.ArgumentParser], None], **options: dict):
    """Compose argument adders with extra ``--option`` definitions (name -> add_argument kwargs)."""

    def add(p: argparse.ArgumentParser) -> None:
        for fn in adders:
            fn(p)
        for name, kw in options.items():
            p.add_argument("--" + name.replace("_", "-"), **kw)

    return add


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML run config (defaults for anything it omits)")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.rounds=3 (repeatable)")
    p.add_argument("--data-root", help="folder of local parquet mirrors (overrides data.data_root)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (overrides device)")
    p.add_argument("--threads", type=int, help="torch threads (overrides threads)")
    p.add_argument("--seed", type=int, help="run seed (overrides seed)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


# ---------------------------------------------------------------------------------------------------------
_DATASET_HELP = "a preset's name, or a source: hf:OWNER/NAME, parquet:DIR, imagefolder:DIR"


verb("data", "describe a dataset (sizes, classes): a preset, a declared one, or --list the presets",
     _with(_config_args, dataset={"help": _DATASET_HELP}, list={"action": "store_true"}), "benchmark.cli.data:data")


verb("cache", "decode a dataset once into the uint8 array cache",
     _with(_config_args, dataset={"help": _DATASET_HELP}, img_size={"type": int}, cache_dir={}),
     "benchmark.cli.runs:cache")


verb("partition", "partition a dataset's train split among clients and save it as JSON",
     _with(_config_args, out={"required": True, "help": "partition JSON file"}), "benchmark.cli.runs:partition")


verb("pretrain", "supervised pre-training of the backbone on a source dataset (or a backbone cache hit)",
     _with(_config_args, out={"required": True, "help": "weights (.safetensors); a .json card goes beside it, "
                                                         "and OUT@PCT.safetensors/.json per pretrain.checkpoints"},
           cache_dir={"help": "backbone cache folder (default: $SFPROMPT_BACKBONE_CACHE, else "
                              "$XDG_CACHE_HOME/sfprompt-bench/backbones, else ~/.cache/sfprompt-bench/backbones)"},
           stop_after_epoch={"type": int, "help": "debugging: stop after this epoch's resumable state is saved "
                                                  "(a rerun resumes from it)"}), "benchmark.cli.runs:pretrain")


verb("train", "run one federated method and write its result files",
     _with(_config_args, out={"required": True, "help": "run folder"},
           partition={"help": "partition JSON from the partition verb (computed if absent)"},
           no_resume={"action": "store_true", "help": "ignore a checkpoint in --out"},
           lr_from={"metavar": "JSON", "help": "take train.lr from a tuning record (the tune verb's output; "
                                                "applied after --set)"},
           lr_method={"metavar": "METHOD", "help": "the method --lr-from was tuned for, when the run takes another "
                                                    "method's choice (workflow tuning.share; default: the run's)"},
           lr_pick={"choices": ("chosen", "runner_up"), "default": "chosen",
                    "help": "which rate of the --lr-from record: the chosen one, or the runner-up (the best other "
                            "grid point; workflow tuning.recheck)"},
           diverged_ok={"action": "store_true", "help": "a non-finite loss ends the run as a result, 'diverged' (a "
                                                         "metrics row; every file written) instead of an error: "
                                                         "the workflow's runs"}), "benchmark.cli.runs:train")


verb("tune", "one learning-rate search: train its grid points in this process (those not finished yet), "
             "score them on the validation split and write the choice (a spec from the workflow)",
     _with(spec={"required": True, "help": "JSON spec (Workflow.tune_spec): the cell, and per grid point its run "
                                           "folder and settings (a point without settings is scored as found)"},
           out={"required": True, "help": "tuning record (JSON)"},
           threads={"type": int, "help": "torch threads (overrides threads)"},
           quiet={"action": "store_true", "help": "no progress bar or per-point lines"}), "benchmark.cli.runs:tune")


verb("accounting", "per-round client FLOPs and bytes of every method, without training",
     _with(_config_args,
           backbone={"help": "timm ViT name (overrides model.backbone), e.g. vit_base_patch16_224"},
           samples_per_client={"type": int, "default": 500},
           num_classes={"type": int, "default": 10},
           methods={"nargs": "*", "help": "subset of methods (default: the paper's federated methods)"},
           method_set={"action": "append", "default": [], "metavar": "METHOD.KEY=VALUE",
                       "help": "a method's own hyper-parameter, e.g. sfprompt.keep_ratio=0.25 (repeatable)"},
           out={"help": "CSV file"}), "benchmark.cli.runs:accounting")


SYSTEM_ACTIONS = ("usage", "rounds", "crossover", "calibrate", "profiles")


def _system_args(p: argparse.ArgumentParser) -> None:
    """The ``system`` verb's arguments (its actions: :mod:`benchmark.cli.system`)."""
    p.add_argument("action", choices=SYSTEM_ACTIONS)
    p.add_argument("--config", "-c", help="usage: YAML run config (the accounting rule's settings)")
    p.add_argument("--set", "-s", action="append", default=[], metavar="KEY=VALUE", help="usage: config override")
    p.add_argument("--accounting", help="usage: the accounting CSV of the same settings")
    p.add_argument("--samples-per-client", type=int, default=500, help="usage: samples a client holds")
    p.add_argument("--num-classes", type=int, default=10, help="usage: classifier width")
    p.add_argument("--usage", help="rounds, crossover: a usage CSV")
    p.add_argument("--pairs", nargs="*", default=["rpi4/4g", "phone/4g", "jetson_orin_nano/home_wifi",
                                                   "jetson_orin_nano/datacenter"],
                   help="rounds, crossover: CLIENT/LINK pairs (keys of config/system/*.yaml)")
    p.add_argument("--server", default="a100", help="server device (key of servers in devices.yaml)")
    p.add_argument("--clients-per-round", type=int, default=10, help="rounds: sampled clients per round")
    p.add_argument("--profiles", help="folder of devices.yaml and links.yaml (default: config/system)")
    p.add_argument("--workflow-config", "-w", help="calibrate: take the model and data size of this profile")
    p.add_argument("--model", default="d128x6", help="calibrate without -w: a small ViT of benchmark.perf")
    p.add_argument("--clients", type=int, default=10, help="calibrate: clients (synthetic data)")
    p.add_argument("--samples", type=int, help="calibrate: samples per client (default: the profile's)")
    p.add_argument("--methods", nargs="*", default=None, help="default: the paper's federated methods")
    p.add_argument("--method-set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="usage: a method's own hyper-parameter (as the accounting verb takes it)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (calibrate: 1 for the process clock)")
    p.add_argument("--out", help="write the result as CSV here")


verb("system", "the system model: per-round time and energy on real devices and links, calibration",
     _system_args, "benchmark.cli.system:main")


verb("privacy", "reconstruction attacks on the smashed data of one split point (a spec from the workflow)",
     _with(spec={"required": True, "help": "JSON spec (Workflow.privacy_spec): cases, attacks, noise, budgets"},
           threads={"type": int, "help": "torch threads"},
           out={"required": True, "help": "output stem: writes STEM.csv (per image) and STEM.npz (examples)"},
           quiet={"action": "store_true", "help": "no per-attack log lines"}), "benchmark.cli.privacy:privacy")


verb("report", "render tables, figures and the manifest from a workflow's results folder",
     _with(results={"default": "results", "help": "results root holding grid.json (written by the workflow)"},
           only={"choices": ["all", "tables", "figures", "manifest"], "default": "all",
                 "help": "render one kind of output (the workflow runs them as separate rules)"}),
     "benchmark.cli.report:report")


verb("costs", "what a workflow run cost: wall and CPU seconds and peak memory per rule, from its job timings",
     _with(results={"default": "results", "help": "results root of a finished workflow (default: results)"},
           out={"help": "also write the per-rule table as CSV"}), "benchmark.cli.report:costs")


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_a", metavar="RESULTS_A", help="a results folder with a rendered report")
    p.add_argument("results_b", metavar="RESULTS_B", help="the results folder to compare it with")
    p.add_argument("--out", help="write compare_{accuracy,tuning,claims,fingerprints}.{csv,md,tex} here")


verb("compare", "compare two results folders (two machines, labs or commits): accuracy inside each other's "
     "intervals, the same learning rates, the same verdicts; exit 1 when anything differs", _compare_args,
     "benchmark.cli.report:compare")


def _workflow_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflow-config", "-w", help="workflow config YAML (config/smoke.yaml, ...)")
    p.add_argument("--config-json", help="the validated workflow config as JSON (what the Snakefile passes)")
    p.add_argument("--results", help="override the config's results root")


verb("grid", "validate a workflow config and list (or write) its run grid",
     _with(_workflow_args, out={"help": "write the grid as JSON (grid.json, read by the report)"}),
     "benchmark.cli.workflow:grid")


verb("runconfig", "write one grid run's full RunConfig YAML (to rerun or inspect it by hand)",
     _with(_workflow_args, run={"required": True, "help": "BACKBONE/DATASET/PARTITION/VARIANT/seedN"},
           out={"help": "YAML file (default: print)"}), "benchmark.cli.workflow:runconfig")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="verb", required=True)
    for name, (help_, add_args, _) in VERBS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a command line (not a call from Python): a workflow job may run in the fork server's child
        status = prefork.delegate(sys.argv)
        if status is not None:
            return status
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        with _quiet_bars(getattr(args, "quiet", False)):
            return load_runner(VERBS[args.verb][2])(args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def _quiet_bars(quiet: bool):
    """With ``-q``, no progress bar at all (the decode bar reads ``TQDM_DISABLE``, Hugging Face datasets its own
    switch for the parquet conversion), so that an error stays the only line on stderr; restored on exit."""
    if not quiet:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS")}
    os.environ.update(dict.fromkeys(saved, "1"))
    hf = sys.modules.get("datasets")
    was_on = hf is not None and hf.is_progress_bar_enabled()
    if was_on:
        hf.disable_progress_bars()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if was_on:
            hf.enable_progress_bars()

if __name__ == "__main__":
    sys.exit(main())
