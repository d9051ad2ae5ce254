"""Arguments shared by verbs: the run config from ``--config`` and ``--set``, and ``--dataset``
(``--method-set`` is parsed by :func:`benchmark.overrides.method_sets`, the one parser of method overrides)."""

from __future__ import annotations

import argparse

from benchmark.config import RunConfig, load_config, parse_overrides
from benchmark.data.datasets import name_from_source

_FLAGS = (("data.data_root", "data_root"), ("device", "device"), ("threads", "threads"), ("seed", "seed"))


def load_cfg(a: argparse.Namespace, extra: dict | None = None) -> RunConfig:
    """The run config: ``--config``, then ``--set``, then ``extra``, then the flags (``--data-root``, ...)."""
    over = {**parse_overrides(a.set), **(extra or {})}
    for key, attr in _FLAGS:
        if getattr(a, attr, None) is not None:
            over[key] = getattr(a, attr)
    return load_config(a.config, over)


def dataset_override(value: str | None) -> dict:
    """``--dataset`` as config overrides: a preset's name, or a source (``hf:OWNER/NAME``, ``parquet:DIR``,
    ``imagefolder:DIR``) declaring a dataset named after its last path component."""
    if not value:
        return {}
    if ":" not in value:
        return {"data.dataset": value}
    return {"data.dataset": name_from_source(value), "data.source": value}


def load_data_cfg(a: argparse.Namespace) -> RunConfig:
    """The run config with ``--dataset`` applied (it wins over the config's dataset and source)."""
    return load_cfg(a, dataset_override(a.dataset))
