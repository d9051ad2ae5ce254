"""``grid``, ``runconfig``: a workflow config's run grid (light: what the Snakefile calls)."""

from __future__ import annotations

import argparse
import json

from benchmark.errors import ConfigError
from benchmark.io import write_json, write_text
from benchmark.workflow.grid import (
    Workflow,
    find_run,
    load_workflow,
    load_workflow_file,
)


def _load_workflow(a: argparse.Namespace) -> Workflow:
    over = {"results": a.results} if a.results else {}
    if a.config_json:
        try:
            doc = json.loads(a.config_json)
        except json.JSONDecodeError as exc:  # e.g. `--config results=DIR`, which argparse reads as --config-json
            raise ConfigError(f"--config-json {a.config_json[:60]!r} is not JSON ({exc.msg} at character {exc.pos}); "
                              "a workflow config file goes in --workflow-config FILE, its results folder in "
                              "--results DIR") from None
        if not isinstance(doc, dict):
            raise ConfigError(f"--config-json must hold a JSON object (the workflow config), got {type(doc).__name__}")
        return load_workflow({**doc, **over})
    if a.workflow_config:
        return load_workflow_file(a.workflow_config, over)
    raise ConfigError("give --workflow-config FILE or --config-json JSON")


def grid(a: argparse.Namespace) -> int:
    wf = _load_workflow(a)
    if a.out:
        write_json(a.out, wf.grid())
    else:
        for run in wf.runs.values():
            roles = ", ".join(r.kind + ":" + r.name + ("" if r.value is None else f"={r.value}") for r in run.roles)
            print(f"{run.dir}  [{roles}]")
    print(wf.summary())
    return 0


def runconfig(a: argparse.Namespace) -> int:
    wf = _load_workflow(a)
    text = wf.run_config_yaml(find_run(wf, a.run))
    if a.out:
        write_text(a.out, text)
    else:
        print(text, end="")
    return 0
