"""Checks that run before any data is read or any file is written.

:class:`~benchmark.config.RunConfig` already rejects unknown keys, wrong types and out-of-range values.
What needs a registry or the backbone's shape is checked here, so a bad config stops with one line and
leaves nothing behind (no cache, no partition, no run folder): the method, dataset and backbone names,
the split point against the backbone's depth, the weights file, and the partition against the number of
classes.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from benchmark.config import RunConfig, check_patch_grid, check_split_depth
from benchmark.errors import ConfigError
from benchmark.models.vit import arch_kwargs
from benchmark.data.datasets import spec_from_config
from benchmark.methods import method_class


def backbone_depth(cfg: RunConfig) -> int:
    """Depth of the configured backbone, built on the meta device (no memory, no weights)."""
    m = cfg.model
    if not timm.is_model(m.backbone):
        vits = [n for n in timm.list_models("vit_*") if "patch" in n][:8]
        raise ConfigError(f"unknown backbone {m.backbone!r} (config key model.backbone); any timm ViT, e.g. {', '.join(vits)}")
    try:
        with torch.device("meta"):
            model = timm.create_model(m.backbone, pretrained=False, **arch_kwargs(m))
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        with torch.device("meta"):
            plain = timm.create_model(m.backbone, pretrained=False)
        if not isinstance(plain, VisionTransformer):
            raise ConfigError(
                f"model.backbone {m.backbone!r} is a {type(plain).__name__}, not a timm VisionTransformer"
            ) from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"model: cannot build {m.backbone!r} with {arch_kwargs(m)}: {first}") from None
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"model.backbone {m.backbone!r} is a {type(model).__name__}, not a timm VisionTransformer")
    # the architecture's defaults fill what the config leaves null, so check the grid the model really has
    check_patch_grid(model.patch_embed.img_size[0], model.patch_embed.patch_size[0])
    return len(model.blocks)


def check_run(cfg: RunConfig, needs_method: bool = True) -> None:
    """Raise a one-line :class:`ConfigError` for anything that would fail later in a run."""
    if needs_method:
        method_class(cfg.train.method).params(cfg)  # the name and its method_params
    spec = spec_from_config(cfg.data)
    depth = backbone_depth(cfg)
    m = cfg.model
    check_split_depth(m.head_blocks, m.tail_blocks, depth)
    if m.weights.startswith("file:"):
        path = Path(m.weights[len("file:"):])
        if not path.is_file():
            raise ConfigError(f"weights file {str(path)!r} (config key model.weights) does not exist")
    num_classes = getattr(spec, "num_classes", None)
    p = cfg.partition
    if p.scheme == "pathological" and num_classes is not None and p.classes_per_client > num_classes:
        raise ConfigError(
            f"partition.classes_per_client must be between 1 and {num_classes} (the classes of "
            f"{cfg.data.dataset}), got {p.classes_per_client}"
        )
