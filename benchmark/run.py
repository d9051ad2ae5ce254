"""One federated run, end to end: data, partition, method, round loop, result files.

Outputs (in ``out_dir``), each written atomically (temporary file, then rename):

* ``metrics.csv``: tidy, one row per (round, client, split, metric); client -1 means the global model or a
  round total. Splits: ``test`` (global model; ``validation`` instead when ``data.validation_fraction`` holds
  out part of the training data), ``train`` (a client's local work), ``client_train`` (the
  final global model on each client's own data; skipped with ``train.client_eval: false``), ``comm``
  (bytes per round and cumulative), ``compute`` (FLOPs per round and cumulative). Every row carries the method, dataset, partition, seed, config hash
  and git revision.
* ``comm.csv``: the communication ledger (:mod:`benchmark.accounting.comm`).
* ``flops.csv``: the compute ledger (:mod:`benchmark.accounting.compute`), fvcore convention.
* ``config.resolved.yaml`` and ``env.json`` (package versions, device, git revision, seed, warnings).
* ``head_state.safetensors``: the ``head.*`` entries of the aggregated client state after the last round
  (prompts; the head itself for SplitFed and FedAvg), the state the privacy job attacks as "final".

``metrics.csv`` is written last, so its presence marks a complete run. A checkpoint
(``checkpoint.pt``) is written after every round and removed at the end; a rerun resumes from it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from benchmark.config import RunConfig
from benchmark.data.cache import load_image_data, provenance
from benchmark.data.federated import FederatedData
from benchmark.data.partition import Partition, make_partition
from benchmark.errors import DIVERGED, BenchmarkError, ConfigError, NumericError
from benchmark.federation.method import Method
from benchmark.methods import create_method, resolve_config
from benchmark.io import atomic_path, environment, git_revision, write_csv, write_json, write_text
from benchmark.models.vit import input_spec
from benchmark.preflight import check_run

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
HEAD_STATE = "head_state.safetensors"
"""The aggregated client-side head state after the last round (what the server knows; read by the privacy job)."""


def write_head_state(path: Path, global_client: dict[str, torch.Tensor]) -> None:
    """Write the ``head.*`` entries of the global client state (prompts, and the head where the client trains
    it) as safetensors, atomically; empty for methods whose client trains nothing in the head."""
    from safetensors.torch import save_file  # deferred: safetensors.torch imports torch

    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in global_client.items() if k.startswith("head.")},
                  str(tmp))


def resolve_device(spec: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA device that is absent is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available; use device=auto or cpu")
    return torch.device(spec)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process (config key ``keep_freed_memory``); True if applied.

    By default glibc serves blocks above a (dynamic, at most 32 MB) threshold with ``mmap`` and trims the
    heap when its top is free, so the activations of every training step or evaluation batch are returned to
    the OS and page-faulted (zero-filled) back in at the next one. Evaluation batches whose activations
    exceed 32 MB pay it on every call (at batch 500 a third of the CPU time goes to the kernel). Raising
    both thresholds lets freed blocks be reused. A process-wide, allocation-only setting.
    """

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. macOS): nothing to do
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h> constants
    return bool(mallopt(m_trim_threshold, 2**31 - 1)) and bool(mallopt(m_mmap_threshold, 2**30))


def configure_torch(cfg: RunConfig, device: torch.device) -> int:
    """Apply the thread count and determinism settings; return the thread count in force.

    On CUDA we set ``cudnn.benchmark = False`` and ``torch.use_deterministic_algorithms(True,
    warn_only=True)``: ViT training uses matmuls and (fused) attention whose CUDA kernels may still
    reorder floating-point sums (atomics in some backward kernels), so GPU runs are repeatable only up to
    float rounding; the warn-only mode names any such operation in the log. CPU runs are bit-identical.
    """
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.keep_freed_memory:
        keep_freed_memory()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.get_num_threads()


def load_federated_data(cfg: RunConfig, partition_path: str | Path | None = None) -> tuple[FederatedData, Partition]:
    """Decoded data (from the cache) and the client partition (loaded from ``partition_path`` when given,
    computed from the config otherwise). With ``data.validation_fraction`` the partition covers the training
    data minus the validation hold-out, which becomes the evaluation set (``eval_split = "validation"``)."""
    img_size, mean, std = input_spec(cfg.model)
    train, test = load_image_data(cfg.data, img_size, cfg.seed)
    labels = train.labels.numpy()
    if partition_path is not None:
        part = Partition.load(partition_path)
        n = sum(len(c) for c in part.client_indices)
        if part.meta.get("num_samples", n) != len(labels) or len(part.client_indices) != cfg.partition.num_clients:
            raise BenchmarkError(
                f"partition file {str(partition_path)!r} does not fit this config "
                f"({len(part.client_indices)} clients over {part.meta.get('num_samples', n)} samples; the config "
                f"has {cfg.partition.num_clients} clients over {len(labels)} samples)"
            )
    else:
        part = make_partition(labels, len(train.classes), cfg.partition, cfg.seed, cfg.data.dataset,
                              class_names=train.classes)
    data = FederatedData(
        train_images=train.images, train_labels=train.labels, test_images=test.images, test_labels=test.labels,
        client_indices=[np.asarray(c, dtype=np.int64) for c in part.client_indices], classes=list(train.classes),
        mean=mean, std=std, img_size=img_size,
        eval_split="validation" if cfg.data.validation_fraction is not None else "test",
    )
    return data, part


def _round_totals(method: Method) -> list[tuple[int, int, str, str, float]]:
    rows: list[tuple[int, int, str, str, float]] = []
    comm = method.comm.totals()
    for r in comm.itertuples(index=False):
        for name in ("bytes_up", "bytes_down", "bytes_total", "cumulative_bytes"):
            rows.append((int(r.round), -1, "comm", name, float(getattr(r, name))))
    flops = method.compute.frame()
    if len(flops):
        per = flops.groupby(["round", "party"])["total"].sum().unstack(fill_value=0)
        cum = per.cumsum()
        for rnd in per.index:
            for party in per.columns:
                rows.append((int(rnd), -1, "compute", f"{party}_flops", float(per.loc[rnd, party])))
                rows.append((int(rnd), -1, "compute", f"{party}_flops_cumulative", float(cum.loc[rnd, party])))
    return rows


def _tidy(method: Method, cfg: RunConfig, rows: list[tuple], git: str) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["round", "client", "split", "metric", "value"])
    frame = frame.sort_values(["round", "split", "client", "metric"], kind="stable").reset_index(drop=True)
    frame.insert(0, "method", method.name)  # the registry name, also for a train.method 'module:Class' reference
    frame.insert(1, "dataset", cfg.data.dataset)
    frame.insert(2, "partition", cfg.partition.scheme)
    frame.insert(3, "seed", cfg.seed)
    frame["config_hash"] = cfg.hash()
    frame["git_revision"] = git
    return frame


def train(
    cfg: RunConfig,
    out_dir: str | Path,
    partition_path: str | Path | None = None,
    progress: bool = True,
    resume: bool = True,
    extra_env: dict | None = None,
    record_divergence: bool = False,
) -> pd.DataFrame:
    """Run ``cfg`` and write its result files into ``out_dir``; return the metrics frame. ``extra_env`` is
    added to ``env.json`` (e.g. where a tuned learning rate came from).

    A non-finite training loss raises :class:`~benchmark.errors.NumericError`; with ``record_divergence`` the
    run ends there instead and is a result: every file is written (the ledgers and metrics up to that point,
    the head state as last aggregated), ``metrics.csv`` gains one :data:`DIVERGED` row and ``env.json`` a
    ``diverged`` message. The workflow's runs and tuning points train this way, so one diverged cell is
    reported as diverged and the rest of the report is still rendered."""
    check_run(cfg)
    cfg = resolve_config(cfg)  # every method hyper-parameter stated (config.resolved.yaml, config hash)
    out = Path(out_dir)
    device = resolve_device(cfg.device)
    threads = configure_torch(cfg, device)
    data, part = load_federated_data(cfg, partition_path)
    method = create_method(cfg, data, device)
    ckpt = out / CHECKPOINT
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state.get("config_hash") != cfg.hash():
            raise BenchmarkError(f"checkpoint {str(ckpt)!r} belongs to another config; delete it to start afresh")
        method.load_state_dict(state["method"])
        # a warning, so a job's log (the CLI logs warnings only) shows that a retried job resumed
        log.warning("resumed %s from round %d (%s)", cfg.train.method, method.next_round, ckpt)
    out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.train.rounds, initial=method.next_round, disable=not progress,
               desc=f"{cfg.train.method} {cfg.data.dataset}/{cfg.partition.scheme} seed{cfg.seed}", unit="round")
    t0 = time.perf_counter()

    def after_round(rnd: int) -> None:
        acc = [m[4] for m in method.metrics if m[0] == rnd and m[2] == data.eval_split and m[3] == "accuracy"]
        if acc:
            bar.set_postfix(acc=f"{acc[-1]:.3f}")
        bar.update(1)
        if rnd < cfg.train.rounds - 1:
            with atomic_path(ckpt) as tmp:
                torch.save({"config_hash": cfg.hash(), "method": method.state_dict()}, tmp)

    diverged = None
    try:
        method.run(after_round)
    except NumericError as exc:
        if not record_divergence:
            raise
        diverged = str(exc)
        log.warning("%s: diverged, recorded as a result (%s)", cfg.train.method, exc)
    bar.close()
    wall = time.perf_counter() - t0
    git = git_revision(Path(__file__).resolve().parent)
    marker = [(method.next_round, -1, data.eval_split, DIVERGED, 1.0)] if diverged else []
    metrics = _tidy(method, cfg, method.metrics + _round_totals(method) + marker, git)
    env = environment(str(device), cfg.seed, cfg.hash(), threads)
    env.update({
        "method": cfg.train.method, "partition_hash": part.hash, "warnings": method.warnings,
        "eval_split": data.eval_split, "eval_images": int(len(data.test_labels)),
        "test_images": int(len(data.test_labels)) if data.eval_split == "test" else None,
        "test_split_full": cfg.data.max_test_samples is None,
        "data": provenance(cfg.data, data.img_size),  # where the decoded data came from, and its digest
        "wall_seconds_this_process": round(wall, 3), "flop_convention": method.compute.convention,
        # fvcore counts these operators as zero FLOPs (elementwise ops, softmax, GELU): listed, not silenced
        "flop_uncounted_operators": {key: cost.unsupported for key, (_, cost) in method.costs.items()},
        **(extra_env or {}),
        **({"diverged": diverged} if diverged else {}),
    })
    write_text(out / "config.resolved.yaml", cfg.to_yaml())
    write_json(out / "env.json", env)
    write_csv(out / "comm.csv", method.comm.frame())
    write_csv(out / "flops.csv", method.compute.frame())
    write_head_state(out / HEAD_STATE, method.global_client)
    write_csv(out / "metrics.csv", metrics)  # last: its presence marks a complete run
    if ckpt.exists():
        ckpt.unlink()
    return metrics
