"""Command line: ``python -m benchmark <verb> ...``; the Snakefile's rules are one call each.

Verbs: ``data`` (describe a dataset), ``cache`` (decode it once), ``partition``, ``pretrain``, ``train``,
``tune`` (choose a learning rate from validation runs: :mod:`benchmark.tuning`),
``accounting`` (per-round FLOPs and bytes without training), ``system`` (time and energy on real devices and
links, calibration: :mod:`benchmark.system.cli`), ``privacy`` (reconstruction attacks on smashed data),
``report`` (tables, figures, manifest), ``compare`` (two results folders: the same choices, verdicts and
accuracies within each other's intervals?),
``grid`` (validate a workflow config, list its runs), ``runconfig`` (one grid run's RunConfig YAML)
and ``costs`` (wall and CPU time per rule of a finished workflow, from Snakemake's job timings).
Any :class:`~benchmark.errors.BenchmarkError` is printed as one line, ``error: ...``, with exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

Runner = Callable[[argparse.Namespace], int]
VERBS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Runner]] = {}


def verb(name: str, help: str, args: Callable[[argparse.ArgumentParser], None]):
    """Register a verb: its help line, a function adding its arguments, and the decorated runner."""

    def deco(run: Runner) -> Runner:
        VERBS[name] = (help, args, run)
        return run

    return deco


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


def _load_cfg(a: argparse.Namespace):
    from benchmark.config import load_config, parse_overrides

    over = parse_overrides(a.set)
    for key, attr in (("data.data_root", "data_root"), ("device", "device"), ("threads", "threads"), ("seed", "seed")):
        if getattr(a, attr, None) is not None:
            over[key] = getattr(a, attr)
    return load_config(a.config, over)


# ---------------------------------------------------------------------------------------------------------
def _dataset_override(value: str | None) -> dict:
    """``--dataset`` as config overrides: a preset's name, or a source (``hf:OWNER/NAME``, ``parquet:DIR``,
    ``imagefolder:DIR``) declaring a dataset named after its last path component."""
    if not value:
        return {}
    if ":" not in value:
        return {"data.dataset": value}
    from benchmark.data.datasets import name_from_source

    return {"data.dataset": name_from_source(value), "data.source": value}


def _load_data_cfg(a: argparse.Namespace):
    """The run config with ``--dataset`` applied (it wins over the config's dataset and source)."""
    from benchmark.config import load_config, parse_overrides

    over = {**parse_overrides(a.set), **_dataset_override(a.dataset)}
    for key, attr in (("data.data_root", "data_root"), ("device", "device"), ("threads", "threads"), ("seed", "seed")):
        if getattr(a, attr, None) is not None:
            over[key] = getattr(a, attr)
    return load_config(a.config, over)


_DATASET_HELP = "a preset's name, or a source: hf:OWNER/NAME, parquet:DIR, imagefolder:DIR"


@verb("data", "describe a dataset (sizes, classes): a preset, a declared one, or --list the presets",
      _with(_config_args, dataset={"help": _DATASET_HELP}, list={"action": "store_true"}))
def cmd_data(a: argparse.Namespace) -> int:
    from benchmark.data.datasets import DATASETS, describe, spec_from_config

    if a.list or not (a.dataset or a.config or a.set):
        for name in DATASETS.names():
            print(name)
        return 0
    cfg = _load_data_cfg(a)
    print(describe(spec_from_config(cfg.data), cfg.data.data_root))
    return 0


@verb("cache", "decode a dataset once into the uint8 array cache",
      _with(_config_args, dataset={"help": _DATASET_HELP}, img_size={"type": int}, cache_dir={}))
def cmd_cache(a: argparse.Namespace) -> int:
    import torch

    from benchmark.data.cache import build_cache
    from benchmark.data.datasets import spec_from_config

    cfg = _load_data_cfg(a)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    size = a.img_size
    if not size:
        from benchmark.models.vit import input_spec

        size = cfg.data.cache_size(lambda: input_spec(cfg.model)[0])
    path = build_cache(spec_from_config(cfg.data), size, cfg.data.data_root, a.cache_dir or cfg.data.cache_dir)
    print(path)
    return 0


@verb("partition", "partition a dataset's train split among clients and save it as JSON",
      _with(_config_args, out={"required": True, "help": "partition JSON file"}))
def cmd_partition(a: argparse.Namespace) -> int:
    from benchmark.preflight import check_run
    from benchmark.run import load_federated_data

    cfg = _load_cfg(a)
    check_run(cfg, needs_method=False)
    _, part = load_federated_data(cfg)
    part.save(a.out)
    print(f"{a.out}: {len(part.client_indices)} clients, hash {part.hash}")
    return 0


@verb("pretrain", "supervised pre-training of the backbone on a source dataset (or a backbone cache hit)",
      _with(_config_args, out={"required": True, "help": "weights (.safetensors); a .json card goes beside it, "
                                                          "and OUT@PCT.safetensors/.json per pretrain.checkpoints"},
            cache_dir={"help": "backbone cache folder (default: $SFPROMPT_BACKBONE_CACHE, else "
                               "$XDG_CACHE_HOME/sfprompt-bench/backbones, else ~/.cache/sfprompt-bench/backbones)"},
            stop_after_epoch={"type": int, "help": "debugging: stop after this epoch's resumable state is saved "
                                                   "(a rerun resumes from it)"}))
def cmd_pretrain(a: argparse.Namespace) -> int:
    from benchmark.pretrain import pretrain

    cfg = _load_cfg(a)
    card = pretrain(cfg, Path(a.out), progress=not a.quiet, cache_dir=a.cache_dir, stop_after_epoch=a.stop_after_epoch)
    how = "cache hit" if card["cache"]["hit"] else "trained"
    print(f"{a.out}: test accuracy {card['test_accuracy']:.4f} after {card['epochs']} epochs "
          f"({how}, {card['wall_seconds']:.0f} s of training; cache entry {card['cache']['dir']})")
    return 0


@verb("train", "run one federated method and write its result files",
      _with(_config_args, out={"required": True, "help": "run folder"},
            partition={"help": "partition JSON from the partition verb (computed if absent)"},
            no_resume={"action": "store_true", "help": "ignore a checkpoint in --out"},
            lr_from={"metavar": "JSON", "help": "take train.lr from a tuning record (the tune verb's output; "
                                                 "applied after --set)"},
            lr_method={"metavar": "METHOD", "help": "the method --lr-from was tuned for, when the run takes another "
                                                     "method's choice (workflow tuning.share; default: the run's)"},
            diverged_ok={"action": "store_true", "help": "a non-finite loss ends the run as a result, 'diverged' (a "
                                                          "metrics row; every file written) instead of an error: "
                                                          "the workflow's runs"}))
def cmd_train(a: argparse.Namespace) -> int:
    from benchmark.errors import DIVERGED
    from benchmark.run import train

    cfg = _load_cfg(a)
    extra = {}
    if a.lr_from:
        from benchmark.methods import method_name
        from benchmark.tuning import lr_env, read_choice

        # tuning records name the method by its registry name (train.method may be a 'module:Class' reference)
        doc = read_choice(a.lr_from, a.lr_method or method_name(cfg.train.method), cfg.data.dataset)
        cfg = cfg.replace(**{"train.lr": doc["chosen_lr"]})
        extra = lr_env(a.lr_from, doc)
    metrics = train(cfg, Path(a.out), partition_path=a.partition, progress=not a.quiet, resume=not a.no_resume,
                    extra_env=extra, record_divergence=a.diverged_ok)
    if (metrics.metric == DIVERGED).any():
        print(f"{cfg.train.method}: diverged at train.lr={cfg.train.lr:g}, recorded as a result -> {a.out}")
        return 0
    acc = metrics[(metrics.client == -1) & metrics.split.isin(["test", "validation"])
                  & (metrics.metric == "accuracy")]
    if len(acc):
        print(f"{cfg.train.method}: final {acc.split.iloc[-1]} accuracy {acc.value.iloc[-1]:.4f} -> {a.out}")
    return 0


@verb("tune", "one learning-rate search: train its grid points in this process (those not finished yet), "
              "score them on the validation split and write the choice (a spec from the workflow)",
      _with(spec={"required": True, "help": "JSON spec (Workflow.tune_spec): the cell, and per grid point its run "
                                            "folder and settings (a point without settings is scored as found)"},
            out={"required": True, "help": "tuning record (JSON)"},
            threads={"type": int, "help": "torch threads (overrides threads)"},
            quiet={"action": "store_true", "help": "no progress bar or per-point lines"}))
def cmd_tune(a: argparse.Namespace) -> int:
    import json

    from benchmark.errors import ConfigError
    from benchmark.io import write_json
    from benchmark.tuning import search

    try:
        spec = json.loads(a.spec)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--spec is not valid JSON: {exc}") from None
    doc = search(spec, threads=a.threads, progress=not a.quiet, log=(lambda *_: None) if a.quiet else print)
    write_json(a.out, doc)
    print(f"{a.out}: {doc['method']} chose train.lr={doc['chosen_lr']:g} (x{doc['chosen_multiplier']:g}, "
          f"validation accuracy {doc['chosen_val_accuracy'] if doc['chosen_val_accuracy'] is not None else 'n/a'})")
    return 0


@verb("accounting", "per-round client FLOPs and bytes of every method, without training",
      _with(_config_args,
            backbone={"help": "timm ViT name (overrides model.backbone), e.g. vit_base_patch16_224"},
            samples_per_client={"type": int, "default": 500},
            num_classes={"type": int, "default": 10},
            methods={"nargs": "*", "help": "subset of methods (default: the paper's federated methods)"},
            method_set={"action": "append", "default": [], "metavar": "METHOD.KEY=VALUE",
                        "help": "a method's own hyper-parameter, e.g. sfprompt.keep_ratio=0.25 (repeatable)"},
            out={"help": "CSV file"}))
def cmd_accounting(a: argparse.Namespace) -> int:
    from benchmark.accounting.analytic import accounting_table, format_table

    cfg = _load_cfg(a)
    from benchmark.overrides import method_sets

    per_method = method_sets(a.method_set)
    table = accounting_table(cfg, backbone=a.backbone, samples_per_client=a.samples_per_client,
                             num_classes=a.num_classes, methods=a.methods, method_params=per_method)
    if a.out:
        from benchmark.io import write_csv

        write_csv(a.out, table)
    print(format_table(table))
    return 0


def _system_args(p: argparse.ArgumentParser) -> None:
    from benchmark.system.cli import add_args

    add_args(p)


@verb("system", "the system model: per-round time and energy on real devices and links, calibration",
      _system_args)
def cmd_system(a: argparse.Namespace) -> int:
    from benchmark.system.cli import main as system_main

    return system_main(a)


@verb("privacy", "reconstruction attacks on the smashed data of one split point (a spec from the workflow)",
      _with(spec={"required": True, "help": "JSON spec (Workflow.privacy_spec): cases, attacks, noise, budgets"},
            threads={"type": int, "help": "torch threads"},
            out={"required": True, "help": "output stem: writes STEM.csv (per image) and STEM.npz (examples)"},
            quiet={"action": "store_true", "help": "no per-attack log lines"}))
def cmd_privacy(a: argparse.Namespace) -> int:
    import json

    import torch

    from benchmark.privacy.evaluate import evaluate, write_outputs

    if a.threads is not None:
        torch.set_num_threads(a.threads)
    try:
        spec = json.loads(a.spec)
    except json.JSONDecodeError as exc:
        from benchmark.errors import ConfigError

        raise ConfigError(f"--spec is not valid JSON: {exc}") from None
    frame, examples = evaluate(spec, log=(lambda *_: None) if a.quiet else print)
    paths = write_outputs(frame, examples, a.out)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


@verb("report", "render tables, figures and the manifest from a workflow's results folder",
      _with(results={"default": "results", "help": "results root holding grid.json (written by the workflow)"},
            only={"choices": ["all", "tables", "figures", "manifest"], "default": "all",
                  "help": "render one kind of output (the workflow runs them as separate rules)"}))
def cmd_report(a: argparse.Namespace) -> int:
    from benchmark.report.build import build_report

    outputs = build_report(Path(a.results), only=a.only)
    print(f"wrote {len(outputs)} files under {a.results}")
    return 0


@verb("costs", "what a workflow run cost: wall and CPU seconds and peak memory per rule, from its job timings",
      _with(results={"default": "results", "help": "results root of a finished workflow (default: results)"},
            out={"help": "also write the per-rule table as CSV"}))
def cmd_costs(a: argparse.Namespace) -> int:
    from benchmark.report.costs import format_costs, job_costs

    table, span = job_costs(a.results)
    if a.out:
        from benchmark.io import write_csv

        write_csv(a.out, table)
    print(format_costs(table, span))
    return 0


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_a", metavar="RESULTS_A", help="a results folder with a rendered report")
    p.add_argument("results_b", metavar="RESULTS_B", help="the results folder to compare it with")
    p.add_argument("--out", help="write compare_{accuracy,tuning,claims,fingerprints}.{csv,md,tex} here")


@verb("compare", "compare two results folders (two machines, labs or commits): accuracy inside each other's "
      "intervals, the same learning rates, the same verdicts; exit 1 when anything differs", _compare_args)
def cmd_compare(a: argparse.Namespace) -> int:
    from benchmark.report.build import write_table
    from benchmark.report.compare import compare
    from benchmark.report.tables import to_markdown

    result = compare(a.results_a, a.results_b)
    for table in result.tables:
        print(to_markdown(table), end="\n\n")
        if a.out:
            write_table(table, Path(a.out))
    print(result.summary())
    return 0 if result.ok else 1


def _workflow_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workflow-config", "-w", help="workflow config YAML (config/smoke.yaml, ...)")
    p.add_argument("--config-json", help="the validated workflow config as JSON (what the Snakefile passes)")
    p.add_argument("--results", help="override the config's results root")


def _load_workflow(a: argparse.Namespace):
    import json

    from benchmark.errors import ConfigError
    from benchmark.workflow import load_workflow, load_workflow_file

    over = {"results": a.results} if a.results else {}
    if a.config_json:
        return load_workflow({**json.loads(a.config_json), **over})
    if a.workflow_config:
        return load_workflow_file(a.workflow_config, over)
    raise ConfigError("give --workflow-config FILE or --config-json JSON")


@verb("grid", "validate a workflow config and list (or write) its run grid",
      _with(_workflow_args, out={"help": "write the grid as JSON (grid.json, read by the report)"}))
def cmd_grid(a: argparse.Namespace) -> int:
    from benchmark.io import write_json

    wf = _load_workflow(a)
    if a.out:
        write_json(a.out, wf.grid())
    else:
        for run in wf.runs.values():
            roles = ", ".join(r.kind + ":" + r.name + ("" if r.value is None else f"={r.value}") for r in run.roles)
            print(f"{run.dir}  [{roles}]")
    print(wf.summary())
    return 0


@verb("runconfig", "write one grid run's full RunConfig YAML (to rerun or inspect it by hand)",
      _with(_workflow_args, run={"required": True, "help": "BACKBONE/DATASET/PARTITION/VARIANT/seedN"},
            out={"help": "YAML file (default: print)"}))
def cmd_runconfig(a: argparse.Namespace) -> int:
    from benchmark.io import write_text
    from benchmark.workflow import find_run

    wf = _load_workflow(a)
    text = wf.run_config_yaml(find_run(wf, a.run))
    if a.out:
        write_text(a.out, text)
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="verb", required=True)
    for name, (help_, add_args, _) in VERBS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmark.errors import BenchmarkError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        with _quiet_bars(getattr(args, "quiet", False)):
            return VERBS[args.verb][2](args)
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
