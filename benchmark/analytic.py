"""Per-round client FLOPs and bytes of every method, computed without training (any backbone, CPU).

For one client holding ``samples_per_client`` samples, each method's own accounting hooks
(``per_sample_costs``, ``expected_samples``, ``expected_transfers``) give what one round costs. These are
the same hooks a real run charges its ledgers with (tested to match a real run exactly), so paper-scale
numbers (ViT-B/16, ViT-L/16 at 224 px) come from the code that runs, on random weights.

Units: FLOPs in fvcore's convention (1 FLOP = 1 multiply-add), GFLOPs = 1e9; bytes = numel × element
size, MB = 1e6 bytes. Per round means per participating client per round.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import pandas as pd
import torch
from tabulate import tabulate

from benchmark import seeding
from benchmark.accounting.flops import FLOP_CONVENTION
from benchmark.config import ARCH_KEYS, RunConfig
from benchmark.federation.method import Method, Transfer
from benchmark.methods import federated_methods, method_class
from benchmark.models.split import SplitViT
from benchmark.models.vit import create_backbone
from benchmark.study import BASELINE

REFERENCE = BASELINE
"""The paper's FL baseline every ratio is relative to (federated full fine-tuning; :mod:`benchmark.study`)."""


def comm_rows(transfers: list[Transfer]) -> pd.DataFrame:
    rows = [(t.phase, t.direction, t.kind, str(t.dtype).replace("torch.", ""), t.numel,
             t.numel * torch.empty(0, dtype=t.dtype).element_size(), t.messages) for t in transfers]
    return pd.DataFrame(rows, columns=["phase", "direction", "kind", "dtype", "numel", "bytes", "messages"])


def compute_rows(cls: type[Method], model: SplitViT, cfg: RunConfig, samples: int, first: bool = False) -> pd.DataFrame:
    """FLOPs per (phase, party) of one client's round; ``first``: its first sampled round (one-off work)."""
    counts = cls.expected_samples(cfg, samples, first)
    rows = []
    for key, (party, cost) in cls.round_costs(model, cfg, samples, first).items():  # analytic or traced
        phase = key.split("/")[0]
        rows.append((phase, party, counts.get(phase, 0), cost.forward, cost.backward_activation,
                     cost.backward_weight))
    frame = pd.DataFrame(rows, columns=["phase", "party", "samples", "forward", "backward_activation", "backward_weight"])
    frame["total"] = frame.forward + frame.backward_activation + frame.backward_weight
    return frame


def method_round(cls: type[Method], model: SplitViT, cfg: RunConfig, samples: int,
                 first: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comm rows, compute rows) of one client's round under ``cls`` (model trainability set here)."""
    cls.set_trainability(model)
    return comm_rows(cls.expected_transfers(model, cfg, samples)), compute_rows(cls, model, cfg, samples, first)


def accounting_table(
    cfg: RunConfig,
    backbone: str | None = None,
    samples_per_client: int = 500,
    num_classes: int = 10,
    methods: list[str] | None = None,
    method_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per method and reading: client storage, trainable parameters, per-round GFLOPs (steady state
    and a client's first round) and MB, ratios to FedAvg, and the break-even samples per client of every
    method whose traffic grows with its data (where its per-round bytes equal FedAvg's).

    Args:
        cfg: The run settings (split point, prompts, batch size, epochs) shared by every method.
        backbone: Another timm architecture than ``cfg.model.backbone`` (its size overrides are dropped).
        samples_per_client: Local samples of one client.
        num_classes: Classifier width.
        methods: Registered names or ``module:Class`` references (default: the paper's federated methods).
        method_params: Per-method ``method_params`` overrides (a method's own hyper-parameters).

    Each method's default reading is the row with ``reading == "default"``; a method with
    :meth:`~benchmark.federation.method.Method.readings` adds one row per named reading of the paper.
    """
    if backbone and backbone != cfg.model.backbone:
        # Another architecture: the config's size overrides (img_size, depth, ...) belong to the old one.
        cfg = cfg.replace(**{"model.backbone": backbone, **{f"model.{k}": None for k in ARCH_KEYS}})
    names = list(methods or federated_methods())
    torch.manual_seed(seeding.seed_for(cfg.seed, "init"))
    vit = create_backbone(dataclasses.replace(cfg.model, weights="scratch"), num_classes)
    m = cfg.model
    models = {
        False: SplitViT(vit, m.head_blocks, m.tail_blocks, 0, m.prompt_depth),
        True: SplitViT(vit, m.head_blocks, m.tail_blocks, m.prompt_len, m.prompt_depth),
    }
    fed_bytes = _bytes(method_class(REFERENCE), models[False], cfg, samples_per_client)
    rows = []
    for name in names:
        cls = method_class(name)  # a registered name or a 'module:Class' reference (rows use the class's name)
        own = cfg.method_params if cls is method_class(cfg.train.method) else {}  # a run config's: its method's
        base = dict((method_params or {}).get(cls.name, own))
        seen = []
        for reading, over in {"default": {}, **cls.readings()}.items():
            run_cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, method=cls.name),
                                          method_params={**base, **over})
            resolved = cls.resolved_params(run_cfg)
            if resolved in seen:
                continue  # a reading the configured settings already are
            seen.append(resolved)
            rows.append(_method_row(cls, models[cls.uses_prompts], run_cfg, samples_per_client, reading, fed_bytes,
                                    name))
    table = pd.DataFrame(rows)
    if REFERENCE in names:
        base = table[(table.method == REFERENCE) & (table.reading == "default")].iloc[0]
        table["client_flops_pct_of_fedavg"] = 100 * table.client_gflops_round / base.client_gflops_round
        table["client_flops_first_round_pct_of_fedavg"] = (100 * table.client_gflops_first_round
                                                            / base.client_gflops_round)
        table["comm_pct_of_fedavg"] = 100 * table.comm_mb_total / base.comm_mb_total
    table.attrs["flop_convention"] = FLOP_CONVENTION
    return table


def _method_row(cls: type[Method], model: SplitViT, cfg: RunConfig, samples: int, reading: str,
                fed_bytes: float, source: str) -> dict[str, Any]:
    """``source``: how the method was named (its registry name or ``module:Class`` reference): what another
    process resolves to find it (the system rule reads this table)."""
    comm, comp = method_round(cls, model, cfg, samples)
    _, first = method_round(cls, model, cfg, samples, first=True)
    client = comp[comp.party == "client"]
    row = {
        "method": cls.name, "method_source": source, "reading": reading,
        "reading_params": ", ".join(f"{k}={v}" for k, v in sorted(cls.params(cfg).__dict__.items())
                                    if v != getattr(cls.Params(), k)) or "paper defaults",
        "backbone": cfg.model.backbone, "samples_per_client": samples,
        "client_params_stored": cls.client_stored(model),
        "client_params_trainable": sum(p.numel() for k, p in model.named_parameters() if cls.is_client_param(k)),
        "client_gflops_round": client.total.sum() / 1e9,
        "client_gflops_first_round": first[first.party == "client"].total.sum() / 1e9,
        "server_gflops_round": comp[comp.party == "server"].total.sum() / 1e9,
        "comm_mb_up": comm[comm.direction == "up"].bytes.sum() / 1e6,
        "comm_mb_down": comm[comm.direction == "down"].bytes.sum() / 1e6,
    }
    for phase, sub in client.groupby("phase"):
        row[f"client_gflops_{phase}"] = sub.total.sum() / 1e9
    row["comm_mb_total"] = row["comm_mb_up"] + row["comm_mb_down"]
    row["break_even_samples"] = _break_even(cls, model, cfg, fed_bytes)
    return row


def _bytes(cls: type[Method], model: SplitViT, cfg: RunConfig, samples: int) -> float:
    cls.set_trainability(model)
    return float(comm_rows(cls.expected_transfers(model, cfg, samples)).bytes.sum())


def _break_even(cls: type[Method], model: SplitViT, cfg: RunConfig, fed_bytes: float) -> float:
    """Samples per client at which the method's per-round bytes equal FedAvg's (linear in the samples; NaN for
    a method whose traffic does not grow with its data)."""
    at0 = _bytes(cls, model, cfg, 0)
    n = 100 if cls.traced_costs() else 10_000  # a traced method runs its rounds on the meta device: fewer samples
    slope = (_bytes(cls, model, cfg, n) - at0) / n
    return math.nan if slope <= 0 else (fed_bytes - at0) / slope


def format_table(table: pd.DataFrame) -> str:
    table = table[table.reading == "default"] if "reading" in table else table
    cols = [c for c in ("method", "client_params_trainable", "client_gflops_round", "comm_mb_up", "comm_mb_down",
                        "client_flops_pct_of_fedavg", "comm_pct_of_fedavg", "break_even_samples") if c in table]
    head = (f"{table.backbone.iloc[0]}, {table.samples_per_client.iloc[0]} samples per client, per client per "
            f"round; FLOPs: {FLOP_CONVENTION}; MB = 1e6 bytes")
    return head + "\n" + tabulate(table[cols], headers="keys", showindex=False, floatfmt=".4g")
