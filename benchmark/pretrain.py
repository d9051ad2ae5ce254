"""Supervised pre-training of a backbone on a source dataset (``python -m benchmark pretrain``).

SFPrompt fine-tunes a *pre-trained* ViT. The paper profile loads ImageNet-21k weights from timm's hub;
the CPU profiles cannot reach the hub, so they pre-train a small timm ViT here (on CIFAR-100 by default)
and fine-tune it federatedly on other datasets. Writes ``<out>.safetensors`` and a JSON card beside it
(``<out>.json``: source dataset, epochs, samples, test accuracy, wall time, config hash, cache entry), and for
every fraction ``f < 1`` of ``pretrain.checkpoints`` the weights and card at that point of the same trajectory,
``<out>@<pct>.safetensors`` / ``.json`` (``pct = round(100 f)``; the card adds ``epoch`` and ``fraction``).

The weights come from the machine-wide backbone cache (:mod:`benchmark.backbone_cache`): a complete entry for
the same settings and code is copied into ``out`` without training; otherwise this process trains
under the entry's lock, saving a resumable state after every epoch (``resume.pt``: a killed job resumes from
its last finished epoch and ends with bit-identical weights), and publishes the entry.

Recipe (our choice, CPU-sized): AdamW, cosine learning-rate decay with one warm-up epoch, label smoothing
0.1, full precision, and (``pretrain.augment``) random horizontal flips and random crops (4 px padding).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark import seeding
from benchmark.backbone_cache import Entry, cache_settings, checkpoint_epoch, checkpoint_pct, default_cache_dir
from benchmark.config import ARCH_KEYS, RunConfig
from benchmark.data.cache import load_image_data
from benchmark.data.federated import FederatedData
from benchmark.errors import BenchmarkError, NumericError
from benchmark.models.vit import create_backbone, input_spec, load_weights, save_weights
from benchmark.preflight import check_run
from benchmark.run import configure_torch, resolve_device

log = logging.getLogger(__name__)


class StoppedEarly(BenchmarkError):
    """Raised by ``stop_after_epoch`` (a debugging and test hook) after that epoch's resumable state is saved."""


@dataclasses.dataclass
class _Job:
    """What training and evaluation share: the config, the device and the data."""

    cfg: RunConfig
    device: torch.device
    data: FederatedData

    @property
    def num_classes(self) -> int:
        return self.data.num_classes


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random 4-px-padded crop (per batch offsets, per sample flips)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    pad = 4
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    return xp[..., i:i + h, j:j + w]


def _prepare(cfg: RunConfig) -> _Job:
    pre = cfg.pretrain
    device = resolve_device(cfg.device)
    configure_torch(cfg, device)
    img_size, mean, std = input_spec(cfg.model)
    data_cfg = dataclasses.replace(cfg.data.preset(pre.dataset), max_train_samples=pre.max_train_samples,
                                   max_test_samples=pre.max_test_samples)
    train, test = load_image_data(data_cfg, img_size, cfg.seed)
    data = FederatedData(train.images, train.labels, test.images, test.labels, [], list(train.classes),
                         mean, std, img_size)
    return _Job(cfg, device, data)


def _new_model(job: _Job) -> torch.nn.Module:
    torch.manual_seed(seeding.seed_for(job.cfg.seed, "pretrain", "init"))
    return create_backbone(dataclasses.replace(job.cfg.model, weights="scratch"), job.num_classes).to(job.device)


def _evaluate(model: torch.nn.Module, job: _Job) -> float:
    """Top-1 accuracy on the source dataset's test split (``pretrain.max_test_samples`` of it)."""
    was_training = model.training
    model.eval()
    correct, n = 0, len(job.data.test_labels)
    with torch.no_grad():
        for x, y in job.data.batches(torch.arange(n).numpy(), 256, job.device, None, split="test"):
            correct += int((model(x).argmax(-1) == y).sum())
    model.train(was_training)
    return correct / n


def _card(job: _Job) -> dict[str, Any]:
    """The card fields every weight file of this pre-training shares."""
    cfg, pre, data = job.cfg, job.cfg.pretrain, job.data
    return {
        "backbone": cfg.model.backbone,
        "architecture": {k: getattr(cfg.model, k) for k in ARCH_KEYS},
        "source_dataset": pre.dataset, "num_classes": data.num_classes,
        "train_samples": int(len(data.train_labels)), "test_samples": int(len(data.test_labels)),
        "epochs": pre.epochs, "batch_size": pre.batch_size, "lr": pre.lr, "weight_decay": pre.weight_decay,
        "augment": pre.augment, "chance_accuracy": 1 / data.num_classes, "device": str(job.device),
        "seed": cfg.seed,
    }


def _checkpoint_card(job: _Job, fraction: float, epoch: int, accuracy: float) -> dict[str, Any]:
    return {**_card(job), "fraction": fraction, "pct": checkpoint_pct(fraction), "epoch": epoch,
            "test_accuracy": accuracy}


def _train_epoch(model, opt, sched, job: _Job, epoch: int, gen: torch.Generator, bar) -> None:
    """One pass over the source training set (one optimizer step per batch)."""
    pre = job.cfg.pretrain
    model.train()
    order = seeding.torch_generator(job.cfg.seed, "pretrain", "order", epoch)
    for x, y in job.data.batches(torch.arange(len(job.data.train_labels)).numpy(), pre.batch_size, job.device,
                                 order):
        loss = F.cross_entropy(model(_augment(x, gen) if pre.augment else x), y, label_smoothing=0.1)
        if not torch.isfinite(loss):
            raise NumericError(f"pretrain: non-finite loss in epoch {epoch}; lower pretrain.lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.update(1)
        bar.set_postfix(epoch=epoch, loss=f"{float(loss.detach()):.3f}")


def _train(job: _Job, entry: Entry, progress: bool, stop_after_epoch: Optional[int]) -> None:
    """Train (or resume) the entry's trajectory, saving every epoch's weights, the checkpoints asked for, and a
    resumable state; publish the entry at the end. Runs under the entry's lock."""
    cfg, pre = job.cfg, job.cfg.pretrain
    entry.start()
    model = _new_model(job)
    opt = torch.optim.AdamW(model.parameters(), lr=pre.lr, weight_decay=pre.weight_decay)
    steps_per_epoch = math.ceil(len(job.data.train_labels) / pre.batch_size)
    total, warmup = pre.epochs * steps_per_epoch, steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
    )
    gen = seeding.torch_generator(cfg.seed, "pretrain", "augment")
    start, wall = 0, 0.0
    state = entry.load_resume()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["augment_generator"])
        torch.set_rng_state(state["torch_rng"])
        start, wall = int(state["epoch"]), float(state["wall_seconds"])
        # a warning, so a job's log (the CLI logs warnings only) shows that a retried job resumed
        log.warning("resumed pre-training of %s from epoch %d of %d (%s)", cfg.model.backbone, start, pre.epochs,
                    entry.resume_file)
    at_epoch: dict[int, list[float]] = {}
    for f in pre.checkpoints:
        at_epoch.setdefault(checkpoint_epoch(f, pre.epochs), []).append(f)
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=start * steps_per_epoch, disable=not progress,
               desc=f"pretrain {cfg.model.backbone} on {pre.dataset}", unit="step")
    for epoch in range(start, pre.epochs):
        _train_epoch(model, opt, sched, job, epoch, gen, bar)
        done = epoch + 1
        save_weights(model, entry.epoch_file(done))
        fractions = [f for f in at_epoch.get(done, []) if checkpoint_pct(f) < 100]
        if fractions:
            acc = _evaluate(model, job)
            for f in fractions:
                entry.write_checkpoint(checkpoint_pct(f), done, _checkpoint_card(job, f, done, acc))
        entry.save_resume({"epoch": done, "model": model.state_dict(), "optimizer": opt.state_dict(),
                           "scheduler": sched.state_dict(), "augment_generator": gen.get_state(),
                           "torch_rng": torch.get_rng_state(),
                           "wall_seconds": wall + time.perf_counter() - t0})
        if stop_after_epoch is not None and done == stop_after_epoch and done < pre.epochs:
            bar.close()
            raise StoppedEarly(f"pretrain: stopped after epoch {done} (stop_after_epoch); rerun to resume")
    bar.close()
    card = {**_card(job), "fraction": 1.0, "epoch": pre.epochs, "test_accuracy": _evaluate(model, job),
            "wall_seconds": wall + time.perf_counter() - t0, "config_hash": cfg.hash()}
    entry.publish(card, pre.epochs)


def _missing_checkpoints(entry: Entry, fractions: list[float]) -> list[float]:

    missing = []
    for f in fractions:
        path = entry.ckpt_file(checkpoint_pct(f), ".json")
        try:
            json.loads(path.read_text())["test_accuracy"]
        except (OSError, ValueError, KeyError, TypeError):
            missing.append(f)
    return missing


def _fill_checkpoints(job: _Job, entry: Entry, fractions: list[float]) -> None:
    """Evaluate checkpoints asked for after the entry was trained, from its per-epoch weights (no training)."""
    epochs = job.cfg.pretrain.epochs
    for f in fractions:
        epoch = checkpoint_epoch(f, epochs)
        model = _new_model(job)
        load_weights(model, entry.epoch_file(epoch))
        log.info("backbone cache %s: evaluating the new checkpoint %d%% (epoch %d)", entry.key, checkpoint_pct(f),
                 epoch)
        entry.write_checkpoint(checkpoint_pct(f), epoch, _checkpoint_card(job, f, epoch, _evaluate(model, job)))


def pretrain(cfg: RunConfig, out: Path, progress: bool = True, cache_dir: str | Path | None = None,
             stop_after_epoch: Optional[int] = None) -> dict:
    """Pre-train ``cfg.model`` (with ``weights: scratch``) on ``cfg.pretrain.dataset``, or take it from the
    backbone cache ``cache_dir`` (None: :func:`~benchmark.backbone_cache.default_cache_dir`); write the weights
    and cards for ``out`` and return the final card (``card["cache"]``: key, hit, dir).

    ``stop_after_epoch`` (debugging, tests): raise :class:`StoppedEarly` once that epoch's state is saved.
    """
    pre = cfg.pretrain
    check_run(dataclasses.replace(cfg, data=cfg.data.preset(pre.dataset)).replace(**{"model.weights": "scratch"}),
              needs_method=False)
    entry = Entry(Path(cache_dir) if cache_dir is not None else default_cache_dir(), cache_settings(cfg))
    hit = entry.is_complete()
    job: Optional[_Job] = None
    if not hit:
        with entry.lock():
            hit = entry.is_complete()  # another job may have trained it while this one waited for the lock
            if not hit:
                job = _prepare(cfg)
                _train(job, entry, progress, stop_after_epoch)
    if hit:
        log.warning("backbone cache hit: %s (key %s), no training", entry.dir, entry.key)
    wanted = [f for f in pre.checkpoints if checkpoint_pct(f) < 100]
    missing = _missing_checkpoints(entry, wanted)
    if missing:
        with entry.lock():
            missing = _missing_checkpoints(entry, wanted)
            if missing:
                _fill_checkpoints(job or _prepare(cfg), entry, missing)
    weights = out if out.suffix == ".safetensors" else out.with_suffix(".safetensors")
    info = {"cache": entry.info(hit)}
    for f in wanted:
        pct = checkpoint_pct(f)
        card = entry.card_of(pct)
        entry.export(weights.with_name(f"{weights.stem}@{pct}.safetensors"),
                     {**card, **info, "weights_file": f"{weights.stem}@{pct}.safetensors"},
                     entry.epoch_file(card["epoch"]))  # sha256-checked; ckpt-<pct> links to the same file
    card = {k: v for k, v in entry.card().items() if k not in ("files", "cache_key")}
    card.update(info, config_hash=cfg.hash(), weights_file=weights.name)
    entry.export(weights, card, entry.final)
    return card
