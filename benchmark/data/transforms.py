"""Per-batch tensor transforms from the cached uint8 images to a backbone's float input.

They run on whatever device the batch is on (move the uint8 batch to the GPU first: it is 4x smaller than
float32), cost one or two elementwise passes, and have no randomness: the suite does no data augmentation
(our choice, matching prompt-tuning practice on small federated runs).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""timm's ``IMAGENET_DEFAULT_MEAN``; use the backbone's ``pretrained_cfg["mean"]`` when it has one."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""timm's ``IMAGENET_DEFAULT_STD``."""


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images -> float32 ``(x / 255 - mean) / std``, per channel, on the input's device.

    Args:
        images: uint8 ``[B, C, H, W]`` (or ``[C, H, W]``), values 0..255.
        mean: Per-channel mean in 0..1 units (e.g. timm's ``model.pretrained_cfg["mean"]``), length C.
        std: Per-channel standard deviation in 0..1 units, length C.

    Returns:
        float32 tensor of the same shape, on the same device.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 images (0..255), got {images.dtype}")
    channels = images.shape[-3]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std have {len(mean)}/{len(std)} values for {channels} image channels")
    shape = (channels, 1, 1)
    # Fold the 1/255 into the constants: (x - 255 * mean) / (255 * std), two elementwise passes.
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).mul_(255.0).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).mul_(255.0).view(shape)
    return images.to(torch.float32).sub_(m).div_(s)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch ``[B, C, H, W]`` to ``[B, C, size, size]`` (bilinear, antialias), keeping its dtype.

    For backbones whose input is larger than the cached images (e.g. CIFAR at 32 px into a 224-px ViT):
    upsampling per batch on the device avoids a cache that grows with ``size**2``. A no-op at the same size.
    """
    if images.shape[-2:] == (size, size):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    if images.dtype == torch.uint8:
        return out.round_().clamp_(0, 255).to(torch.uint8)
    return out.to(images.dtype)
