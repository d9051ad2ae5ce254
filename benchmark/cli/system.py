"""``python -m benchmark system ACTION``: the system model's command line (the workflow's ``system`` rule and the
docs call it; its arguments are declared in :mod:`benchmark.__main__`).

Actions:

* ``usage``: one client's round per method (FLOPs from an ``accounting`` CSV, bytes and message legs from the
  methods' expected transfers) -> a usage CSV, the input of the paper-scale tables (the ``system`` rule).
* ``rounds``: per-round time and client energy of every method under profile pairs, from a usage CSV.
* ``crossover``: the uplink bandwidth below which SFPrompt beats FedAvg, from a usage CSV.
* ``calibrate``: measure the ``local`` rate and compare predicted with measured compute time per method.
* ``profiles``: list the profiles and the source of every figure.
"""

from __future__ import annotations

import argparse

import pandas as pd

from benchmark.cli.args import load_cfg
from benchmark.config import from_dict
from benchmark.errors import ConfigError
from benchmark.io import write_csv
from benchmark.methods import federated_methods
from benchmark.overrides import flatten, method_sets, unflatten
from benchmark.perf import run_config, synthetic_data
from benchmark.study import BASELINE
from benchmark.system.analysis import analytic_usage, paper_scale_rounds, uplink_crossovers
from benchmark.system.calibrate import calibrate, calibration_frame
from benchmark.system.profiles import load_profiles
from benchmark.workflow.grid import load_workflow_file
from benchmark.workflow.names import ARCH_KEYS


def _write(frame, out: str | None) -> None:
    if out:
        write_csv(out, frame)


def _calibration_config(a: argparse.Namespace):
    """(RunConfig, clients, samples per client) of the calibration: a workflow profile's first backbone and
    base run settings, or a small ViT of :mod:`benchmark.perf`."""
    if not a.workflow_config:
        return run_config(BASELINE, a.model, a.clients).replace(threads=a.threads), a.clients, a.samples or 100
    wf = load_workflow_file(a.workflow_config)
    label = next(iter(wf.backbones))
    flat = {k: v for k, v in flatten(wf.base).items() if not k.startswith(("data.", "device"))}
    flat.update({f"model.{k}": v for k, v in wf.backbones[label]["model"].items() if k in ARCH_KEYS})
    flat.update({"model.weights": "scratch", "threads": a.threads, "device": "cpu", "seed": 0})
    clients = wf.base.get("partition", {}).get("num_clients", 10)
    flat["partition.num_clients"] = clients
    return from_dict(unflatten(flat)), clients, a.samples or wf.run_samples_per_client()


def main(a: argparse.Namespace) -> int:
    if a.action == "profiles":
        prof = load_profiles(a.profiles)
        for kind, name, field, source in prof.citations():
            print(f"{kind:7} {name:18} {field:20} {source}")
        return 0
    if a.action == "usage":
        a.data_root = a.device = a.seed = None
        cfg = load_cfg(a)
        if not a.accounting:
            raise ConfigError("system usage needs --accounting FILE (the accounting verb's CSV)")
        usage = analytic_usage(cfg, a.samples_per_client, pd.read_csv(a.accounting), a.num_classes,
                               a.methods, method_sets(a.method_set))
        _write(usage, a.out)
        print(usage.to_string(index=False))
        return 0
    if a.action in ("rounds", "crossover"):
        prof = load_profiles(a.profiles)
        usage = pd.read_csv(a.usage)
        if a.action == "rounds":
            frames = [paper_scale_rounds(usage, prof.pair(p, a.server), a.clients_per_round).assign(pair=p)
                      for p in a.pairs]
            table = pd.concat(frames, ignore_index=True)
        else:
            table = uplink_crossovers(usage, prof, a.pairs, a.server)
        _write(table, a.out)
        print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        return 0
    # calibrate
    cfg, clients, samples = _calibration_config(a)
    size = cfg.model.img_size or 224
    data = synthetic_data(clients, samples, img_size=size, test_samples=10)
    rate, rows = calibrate(cfg, data, a.methods or federated_methods())
    table = calibration_frame(rate, rows)
    _write(table, a.out)
    print(f"local rate {rate / 1e9:.1f} G multiply-adds/s (reference training step, process CPU time, "
          f"{a.threads} thread); {clients} clients x {samples} samples, batch {cfg.train.batch_size}")
    print(table.to_markdown(index=False, floatfmt=".3g"))
    return 0
