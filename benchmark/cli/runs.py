"""``cache``, ``partition``, ``pretrain``, ``train``, ``tune``, ``accounting``: the verbs that import torch."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmark.analytic import accounting_table, format_table
from benchmark.cli.args import load_cfg, load_data_cfg
from benchmark.data.cache import build_cache
from benchmark.data.datasets import spec_from_config
from benchmark.errors import DIVERGED, ConfigError
from benchmark.io import write_csv, write_json
from benchmark.methods import method_name
from benchmark.models.vit import input_spec
from benchmark.overrides import method_sets
from benchmark.preflight import check_run
from benchmark.pretrain import pretrain as pretrain_backbone
from benchmark.run import load_federated_data
from benchmark.run import train as train_run
from benchmark.tuning import lr_env, pick_lr, read_choice, search


def cache(a: argparse.Namespace) -> int:
    cfg = load_data_cfg(a)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    size = a.img_size or cfg.data.cache_size(lambda: input_spec(cfg.model)[0])
    path = build_cache(spec_from_config(cfg.data), size, cfg.data.data_root, a.cache_dir or cfg.data.cache_dir)
    print(path)
    return 0


def partition(a: argparse.Namespace) -> int:
    cfg = load_cfg(a)
    check_run(cfg, needs_method=False)
    _, part = load_federated_data(cfg)
    part.save(a.out)
    print(f"{a.out}: {len(part.client_indices)} clients, hash {part.hash}")
    return 0


def pretrain(a: argparse.Namespace) -> int:
    cfg = load_cfg(a)
    card = pretrain_backbone(cfg, Path(a.out), progress=not a.quiet, cache_dir=a.cache_dir,
                             stop_after_epoch=a.stop_after_epoch)
    how = "cache hit" if card["cache"]["hit"] else "trained"
    print(f"{a.out}: test accuracy {card['test_accuracy']:.4f} after {card['epochs']} epochs "
          f"({how}, {card['wall_seconds']:.0f} s of training; cache entry {card['cache']['dir']})")
    return 0


def train(a: argparse.Namespace) -> int:
    cfg = load_cfg(a)
    extra = {}
    if a.lr_from:
        # tuning records name the method by its registry name (train.method may be a 'module:Class' reference)
        doc = read_choice(a.lr_from, a.lr_method or method_name(cfg.train.method), cfg.data.dataset)
        lr, pick = pick_lr(doc, a.lr_pick)
        cfg = cfg.replace(**{"train.lr": lr})
        extra = {**lr_env(a.lr_from, doc), "lr_pick": pick}
    metrics = train_run(cfg, Path(a.out), partition_path=a.partition, progress=not a.quiet, resume=not a.no_resume,
                        extra_env=extra, record_divergence=a.diverged_ok)
    if (metrics.metric == DIVERGED).any():
        print(f"{cfg.train.method}: diverged at train.lr={cfg.train.lr:g}, recorded as a result -> {a.out}")
        return 0
    acc = metrics[(metrics.client == -1) & metrics.split.isin(["test", "validation"])
                  & (metrics.metric == "accuracy")]
    if len(acc):
        print(f"{cfg.train.method}: final {acc.split.iloc[-1]} accuracy {acc.value.iloc[-1]:.4f} -> {a.out}")
    return 0


def tune(a: argparse.Namespace) -> int:
    try:
        spec = json.loads(a.spec)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--spec is not valid JSON: {exc}") from None
    doc = search(spec, threads=a.threads, progress=not a.quiet, log=(lambda *_: None) if a.quiet else print)
    write_json(a.out, doc)
    print(f"{a.out}: {doc['method']} chose train.lr={doc['chosen_lr']:g} (x{doc['chosen_multiplier']:g}, "
          f"validation accuracy {doc['chosen_val_accuracy'] if doc['chosen_val_accuracy'] is not None else 'n/a'})")
    return 0


def accounting(a: argparse.Namespace) -> int:
    cfg = load_cfg(a)
    table = accounting_table(cfg, backbone=a.backbone, samples_per_client=a.samples_per_client,
                             num_classes=a.num_classes, methods=a.methods, method_params=method_sets(a.method_set))
    if a.out:
        write_csv(a.out, table)
    print(format_table(table))
    return 0
