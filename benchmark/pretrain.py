"""Supervised pre-training of a backbone on a source dataset (``python -m benchmark pretrain``).

SFPrompt fine-tunes a *pre-trained* ViT. The paper profile loads ImageNet-21k weights from timm's hub;
the CPU profiles cannot reach the hub, so they pre-train a small timm ViT here (on CIFAR-100 by default)
and fine-tune it federatedly on other datasets. Writes ``<out>.safetensors`` and a JSON card beside it
(``<out>.json``: source dataset, epochs, samples, test accuracy, wall time, config hash).

Recipe (our choice, CPU-sized): AdamW, cosine learning-rate decay with one warm-up epoch, label smoothing
0.1, full precision, and (``pretrain.augment``) random horizontal flips and random crops (4 px padding).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark import seeding
from benchmark.config import RunConfig
from benchmark.data.cache import load_image_data
from benchmark.data.federated import FederatedData
from benchmark.errors import NumericError
from benchmark.io import write_json
from benchmark.models.vit import create_backbone, input_spec, save_weights
from benchmark.preflight import check_run
from benchmark.run import configure_torch, resolve_device


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random 4-px-padded crop (per batch offsets, per sample flips)."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)
    pad = 4
    h, w = x.shape[-2:]
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    i, j = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=gen))
    return xp[..., i:i + h, j:j + w]


def pretrain(cfg: RunConfig, out: Path, progress: bool = True) -> dict:
    """Pre-train ``cfg.model`` (with ``weights: scratch``) on ``cfg.pretrain.dataset``; return the card."""
    pre = cfg.pretrain
    data_cfg = cfg.data.preset(pre.dataset)  # a preset, not the dataset the runs may declare in data.*
    check_run(dataclasses.replace(cfg, data=data_cfg).replace(**{"model.weights": "scratch"}), needs_method=False)
    device = resolve_device(cfg.device)
    configure_torch(cfg, device)
    img_size, mean, std = input_spec(cfg.model)
    data_cfg = dataclasses.replace(data_cfg, max_train_samples=pre.max_train_samples,
                                   max_test_samples=pre.max_test_samples)
    train, test = load_image_data(data_cfg, cfg.data.cache_img_size or img_size, cfg.seed)
    data = FederatedData(train.images, train.labels, test.images, test.labels, [], list(train.classes),
                         mean, std, img_size)
    torch.manual_seed(seeding.seed_for(cfg.seed, "pretrain", "init"))
    model = create_backbone(dataclasses.replace(cfg.model, weights="scratch"), len(train.classes)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=pre.lr, weight_decay=pre.weight_decay)
    steps_per_epoch = math.ceil(len(train.labels) / pre.batch_size)
    total, warmup = pre.epochs * steps_per_epoch, steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
    )
    gen = seeding.torch_generator(cfg.seed, "pretrain", "augment")
    t0 = time.perf_counter()
    bar = tqdm(total=total, disable=not progress, desc=f"pretrain {cfg.model.backbone} on {pre.dataset}", unit="step")
    all_idx = torch.arange(len(train.labels)).numpy()
    for epoch in range(pre.epochs):
        model.train()
        order = seeding.torch_generator(cfg.seed, "pretrain", "order", epoch)
        for x, y in data.batches(all_idx, pre.batch_size, device, order):
            loss = F.cross_entropy(model(_augment(x, gen) if pre.augment else x), y, label_smoothing=0.1)
            if not torch.isfinite(loss):
                raise NumericError(f"pretrain: non-finite loss in epoch {epoch}; lower pretrain.lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{float(loss):.3f}")
    bar.close()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in data.batches(torch.arange(len(test.labels)).numpy(), 256, device, None, split="test"):
            correct += int((model(x).argmax(-1) == y).sum())
    wall = time.perf_counter() - t0
    weights = out if out.suffix == ".safetensors" else out.with_suffix(".safetensors")
    save_weights(model, weights)
    card = {
        "backbone": cfg.model.backbone,
        "architecture": {k: getattr(cfg.model, k) for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads")},
        "source_dataset": pre.dataset, "num_classes": len(train.classes),
        "train_samples": int(len(train.labels)), "test_samples": int(len(test.labels)),
        "epochs": pre.epochs, "batch_size": pre.batch_size, "lr": pre.lr, "weight_decay": pre.weight_decay,
        "augment": pre.augment,
        "test_accuracy": correct / len(test.labels), "chance_accuracy": 1 / len(train.classes),
        "wall_seconds": wall, "device": str(device), "seed": cfg.seed, "config_hash": cfg.hash(),
        "weights_file": weights.name,
    }
    write_json(weights.with_suffix(".json"), card)
    return card
