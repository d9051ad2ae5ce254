"""``data``: describe a dataset (light: no torch)."""

from __future__ import annotations

import argparse

from benchmark.cli.args import load_data_cfg
from benchmark.data.datasets import DATASETS, describe, spec_from_config


def data(a: argparse.Namespace) -> int:
    if a.list or not (a.dataset or a.config or a.set):
        for name in DATASETS.names():
            print(name)
        return 0
    cfg = load_data_cfg(a)
    print(describe(spec_from_config(cfg.data), cfg.data.data_root))
    return 0
