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

import pandas as pd
import torch
from tabulate import tabulate

from benchmark import seeding
from benchmark.accounting.flops import FLOP_CONVENTION
from benchmark.config import RunConfig
from benchmark.federation.method import Method, Transfer, method_class
from benchmark.models.split import SplitViT
from benchmark.models.vit import ARCH_KEYS, create_backbone

ALL_METHODS = ("fedavg", "fedprompt", "sfl_v1", "sfl_v2", "sfprompt")


def configure(model: SplitViT, cls: type[Method]) -> SplitViT:
    """Set ``requires_grad`` to the method's trainable parameters."""
    for name, p in model.named_parameters():
        p.requires_grad_(cls.is_client_param(name) or cls.is_server_param(name))
    return model


def comm_rows(transfers: list[Transfer]) -> pd.DataFrame:
    rows = [(t.phase, t.direction, t.kind, str(t.dtype).replace("torch.", ""), t.numel,
             t.numel * torch.empty(0, dtype=t.dtype).element_size(), t.messages) for t in transfers]
    return pd.DataFrame(rows, columns=["phase", "direction", "kind", "dtype", "numel", "bytes", "messages"])


def compute_rows(cls: type[Method], model: SplitViT, cfg: RunConfig, samples: int) -> pd.DataFrame:
    costs = cls.per_sample_costs(model, cfg)
    counts = cls.expected_samples(cfg, samples)
    rows = []
    for key, (party, cost) in costs.items():
        phase = key.split("/")[0]
        n = counts.get(phase, 0)
        if n == 0 and phase in ("local_loss", "el2n"):
            continue
        rows.append((phase, party, n, cost.forward * n, cost.backward_activation * n, cost.backward_weight * n))
    frame = pd.DataFrame(rows, columns=["phase", "party", "samples", "forward", "backward_activation", "backward_weight"])
    frame["total"] = frame.forward + frame.backward_activation + frame.backward_weight
    return frame


def method_round(cls: type[Method], model: SplitViT, cfg: RunConfig, samples: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comm rows, compute rows) of one client's round under ``cls`` (model trainability set here)."""
    configure(model, cls)
    return comm_rows(cls.expected_transfers(model, cfg, samples)), compute_rows(cls, model, cfg, samples)


def accounting_table(
    cfg: RunConfig,
    backbone: str | None = None,
    samples_per_client: int = 500,
    num_classes: int = 10,
    methods: list[str] | None = None,
) -> pd.DataFrame:
    """One row per method: client storage, trainable parameters, per-round GFLOPs and MB, and ratios to
    FedAvg, plus SFPrompt's break-even samples per client (where its traffic equals FedAvg's)."""
    if backbone and backbone != cfg.model.backbone:
        # Another architecture: the config's size overrides (img_size, depth, ...) belong to the old one.
        cfg = cfg.replace(**{"model.backbone": backbone, **{f"model.{k}": None for k in ARCH_KEYS}})
    names = list(methods or ALL_METHODS)
    torch.manual_seed(seeding.seed_for(cfg.seed, "init"))
    vit = create_backbone(dataclasses.replace(cfg.model, weights="scratch"), num_classes)
    m = cfg.model
    models = {
        False: SplitViT(vit, m.head_blocks, m.tail_blocks, 0, m.prompt_depth),
        True: SplitViT(vit, m.head_blocks, m.tail_blocks, m.prompt_len, m.prompt_depth),
    }
    rows = []
    for name in names:
        cls = method_class(name)
        model = models[cls.uses_prompts]
        comm, comp = method_round(cls, model, cfg, samples_per_client)
        stored = _client_stored(cls, model)
        trainable = sum(p.numel() for k, p in model.named_parameters() if cls.is_client_param(k))
        client = comp[comp.party == "client"]
        row = {
            "method": name, "backbone": cfg.model.backbone, "samples_per_client": samples_per_client,
            "client_params_stored": stored, "client_params_trainable": trainable,
            "client_gflops_round": client.total.sum() / 1e9,
            "server_gflops_round": comp[comp.party == "server"].total.sum() / 1e9,
            "comm_mb_up": comm[comm.direction == "up"].bytes.sum() / 1e6,
            "comm_mb_down": comm[comm.direction == "down"].bytes.sum() / 1e6,
        }
        for phase, sub in client.groupby("phase"):
            row[f"client_gflops_{phase}"] = sub.total.sum() / 1e9
        row["comm_mb_total"] = row["comm_mb_up"] + row["comm_mb_down"]
        if cls.name == "sfprompt":
            row["break_even_samples"] = _break_even(cls, model, cfg, models[False])
        rows.append(row)
    table = pd.DataFrame(rows)
    if "fedavg" in names:
        base = table.set_index("method").loc["fedavg"]
        table["client_flops_pct_of_fedavg"] = 100 * table.client_gflops_round / base.client_gflops_round
        table["comm_pct_of_fedavg"] = 100 * table.comm_mb_total / base.comm_mb_total
    table.attrs["flop_convention"] = FLOP_CONVENTION
    return table


def _client_stored(cls: type[Method], model: SplitViT) -> int:
    """Parameters the client must hold: everything for whole-model methods, its own parts otherwise."""
    if cls.server_prefixes or cls.name == "sfprompt":
        parts = ("head.",) if cls.server_prefixes else ("head.", "tail.")
        return sum(p.numel() for k, p in model.named_parameters() if k.startswith(parts))
    return sum(p.numel() for p in model.parameters())


def _break_even(cls: type[Method], model: SplitViT, cfg: RunConfig, fedavg_model: SplitViT) -> float:
    """Samples per client at which SFPrompt's per-round bytes equal FedAvg's (linear in the samples)."""
    fedavg = method_class("fedavg")
    configure(fedavg_model, fedavg)
    fed_bytes = comm_rows(fedavg.expected_transfers(fedavg_model, cfg, 1)).bytes.sum()
    configure(model, cls)
    at0 = comm_rows(cls.expected_transfers(model, cfg, 0)).bytes.sum()
    n = 10_000
    slope = (comm_rows(cls.expected_transfers(model, cfg, n)).bytes.sum() - at0) / n
    return math.inf if slope <= 0 else (fed_bytes - at0) / slope


def format_table(table: pd.DataFrame) -> str:
    cols = [c for c in ("method", "client_params_trainable", "client_gflops_round", "comm_mb_up", "comm_mb_down",
                        "client_flops_pct_of_fedavg", "comm_pct_of_fedavg", "break_even_samples") if c in table]
    head = (f"{table.backbone.iloc[0]}, {table.samples_per_client.iloc[0]} samples per client, per client per "
            f"round; FLOPs: {FLOP_CONVENTION}; MB = 1e6 bytes")
    return head + "\n" + tabulate(table[cols], headers="keys", showindex=False, floatfmt=".4g")
