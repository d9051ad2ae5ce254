"""Backbone construction: a timm ``VisionTransformer`` from one factory, with three weight sources.

Weight sources (``model.weights``):
  * ``scratch``: random init (timm's own init).
  * ``timm:<tag>``: the hub's pretrained weights, ``timm.create_model(f"{backbone}.{tag}", pretrained=True)``
    (``timm:default`` takes timm's default tag). This is what the paper profile runs; it needs network
    access or a populated Hugging Face cache.
  * ``file:<path>``: a local ``.safetensors`` checkpoint, e.g. one written by ``python -m benchmark pretrain``.
    A classifier of another width (pre-trained on CIFAR-100, fine-tuned on CIFAR-10) is re-initialised.

CPU-sized variants come from timm's own constructor arguments (``img_size``, ``patch_size``,
``embed_dim``, ``depth``, ``num_heads``), never from a hand-written ViT.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmark.config import ARCH_KEYS, ModelConfig
from benchmark.errors import ConfigError, UnknownNameError
from benchmark.io import atomic_path

if TYPE_CHECKING:
    from timm.models.vision_transformer import VisionTransformer

# timm is imported where a function needs it, not here: importing it pulls in torchvision and torch._dynamo (~3 s
# of the ~7 s a Snakemake process took to parse the workflow), and that parse (every Snakemake process: a dry run,
# each cluster job step) imports this module through the method registry without building a model.


def arch_kwargs(cfg: ModelConfig) -> dict[str, int]:
    """The timm constructor overrides set in the config (None means: the architecture's default)."""
    return {k: getattr(cfg, k) for k in ARCH_KEYS if getattr(cfg, k) is not None}


def create_backbone(cfg: ModelConfig, num_classes: int) -> VisionTransformer:
    """Build the configured timm ViT with a ``num_classes``-way classifier and load its weights."""
    import timm  # deferred: timm pulls in torchvision and torch._dynamo (~3 s); the workflow's parse never builds
    from timm.models.vision_transformer import VisionTransformer  # deferred: as above

    if not timm.is_model(cfg.backbone):
        vits = [n for n in timm.list_models("vit_*") if "patch" in n][:12]
        raise UnknownNameError(
            f"unknown backbone {cfg.backbone!r} (config key model.backbone); any timm ViT name, e.g. {', '.join(vits)}"
        )
    kwargs = dict(arch_kwargs(cfg), num_classes=num_classes)
    name, pretrained = cfg.backbone, False
    if cfg.weights.startswith("timm:"):
        tag = cfg.weights[len("timm:"):]
        name, pretrained = (cfg.backbone if tag in ("", "default") else f"{cfg.backbone}.{tag}"), True
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot create backbone {name!r} with weights {cfg.weights!r}: {first}") from None
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"model.backbone {cfg.backbone!r} is a {type(model).__name__}, not a timm VisionTransformer")
    if cfg.weights.startswith("file:"):
        load_weights(model, Path(cfg.weights[len("file:"):]))
    return model


def load_weights(model: VisionTransformer, path: Path) -> None:
    """Load a safetensors checkpoint; a classifier of a different shape is left freshly initialised."""
    from safetensors.torch import load_file  # deferred: safetensors.torch imports torch

    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} (config key model.weights) does not exist")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ConfigError(f"weights file {str(path)!r} is not a readable safetensors file: {exc}") from None
    own = model.state_dict()
    head_keys = {k for k in state if k.startswith("head.") and k in own and state[k].shape != own[k].shape}
    for k in head_keys:
        del state[k]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head_keys]
    bad_shape = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or bad_shape:
        what = (missing or unexpected or bad_shape)[0]
        raise ConfigError(
            f"weights file {str(path)!r} does not fit backbone (first mismatch: {what!r}); "
            "check model.backbone and its img_size/patch_size/embed_dim/depth/num_heads"
        )


def input_spec(cfg: ModelConfig) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(input resolution, mean, std) of the configured backbone, from timm's pretrained config, without
    building the model. ``model.img_size`` overrides the resolution."""
    import timm  # deferred: see create_backbone

    name = cfg.backbone
    if cfg.weights.startswith("timm:") and cfg.weights[5:] not in ("", "default"):
        name = f"{cfg.backbone}.{cfg.weights[5:]}"
    if not timm.is_model(cfg.backbone):
        raise UnknownNameError(f"unknown backbone {cfg.backbone!r} (config key model.backbone)")
    try:
        pcfg = timm.get_pretrained_cfg(name)
    except RuntimeError:
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{cfg.backbone}.*")]
        raise ConfigError(
            f"model.weights {cfg.weights!r}: no such pretrained tag for {cfg.backbone}; valid: {', '.join(tags) or 'none'}"
        ) from None
    mean = tuple(getattr(pcfg, "mean", None) or (0.5, 0.5, 0.5))
    std = tuple(getattr(pcfg, "std", None) or (0.5, 0.5, 0.5))
    size = cfg.img_size or (pcfg.input_size[-1] if pcfg is not None else 224)
    return int(size), mean, std


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Write the model's state dict as safetensors, atomically."""
    from safetensors.torch import save_file  # deferred: safetensors.torch imports torch


    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp))
