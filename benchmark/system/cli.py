"""``python -m benchmark system ACTION``: the system model's command line (the workflow's ``system`` rule and the
docs call it).

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

ACTIONS = ("usage", "rounds", "crossover", "calibrate", "profiles")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS)
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


def _write(frame, out: str | None) -> None:
    if out:
        from benchmark.io import write_csv

        write_csv(out, frame)


def _calibration_config(a: argparse.Namespace):
    """(RunConfig, clients, samples per client) of the calibration: a workflow profile's first backbone and
    base run settings, or a small ViT of :mod:`benchmark.perf`."""
    from benchmark.config import from_dict
    from benchmark.perf import run_config

    if not a.workflow_config:
        return run_config("fedavg", a.model, a.clients).replace(threads=a.threads), a.clients, a.samples or 100
    from benchmark.overrides import flatten, unflatten
    from benchmark.workflow import ARCH_KEYS, load_workflow_file

    wf = load_workflow_file(a.workflow_config)
    label = next(iter(wf.backbones))
    flat = {k: v for k, v in flatten(wf.base).items() if not k.startswith(("data.", "device"))}
    flat.update({f"model.{k}": v for k, v in wf.backbones[label]["model"].items() if k in ARCH_KEYS})
    flat.update({"model.weights": "scratch", "threads": a.threads, "device": "cpu", "seed": 0})
    clients = wf.base.get("partition", {}).get("num_clients", 10)
    flat["partition.num_clients"] = clients
    return from_dict(unflatten(flat)), clients, a.samples or wf.run_samples_per_client()


def main(a: argparse.Namespace) -> int:
    import pandas as pd

    from benchmark.system.profiles import load_profiles

    if a.action == "profiles":
        prof = load_profiles(a.profiles)
        for kind, name, field, source in prof.citations():
            print(f"{kind:7} {name:18} {field:20} {source}")
        return 0
    if a.action == "usage":
        from benchmark.__main__ import _load_cfg
        from benchmark.overrides import method_sets
        from benchmark.system.analysis import analytic_usage

        a.data_root = a.device = a.seed = None
        cfg = _load_cfg(a)
        if not a.accounting:
            from benchmark.errors import ConfigError

            raise ConfigError("system usage needs --accounting FILE (the accounting verb's CSV)")
        usage = analytic_usage(cfg, a.samples_per_client, pd.read_csv(a.accounting), a.num_classes,
                               a.methods, method_sets(a.method_set))
        _write(usage, a.out)
        print(usage.to_string(index=False))
        return 0
    if a.action in ("rounds", "crossover"):
        from benchmark.system.analysis import paper_scale_rounds, uplink_crossovers

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
    from benchmark.perf import synthetic_data
    from benchmark.system.calibrate import calibrate, calibration_frame

    cfg, clients, samples = _calibration_config(a)
    size = cfg.model.img_size or 224
    data = synthetic_data(clients, samples, img_size=size, test_samples=10)
    from benchmark.methods import federated_methods

    rate, rows = calibrate(cfg, data, a.methods or federated_methods())
    table = calibration_frame(rate, rows)
    _write(table, a.out)
    print(f"local rate {rate / 1e9:.1f} G multiply-adds/s (reference training step, process CPU time, "
          f"{a.threads} thread); {clients} clients x {samples} samples, batch {cfg.train.batch_size}")
    print(table.to_markdown(index=False, floatfmt=".3g"))
    return 0
