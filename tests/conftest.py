"""Shared fixtures: tiny timm ViTs and offline settings for every test."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# The backbone cache (benchmark/backbone_cache.py) defaults to ~/.cache: the tests, and the workflows they start
# (which inherit the environment), use a temporary one instead, never the user's.
os.environ["SFPROMPT_BACKBONE_CACHE"] = tempfile.mkdtemp(prefix="sfprompt-backbones-")
atexit.register(shutil.rmtree, os.environ["SFPROMPT_BACKBONE_CACHE"], ignore_errors=True)

import pytest  # noqa: E402
import timm  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

TINY = dict(img_size=16, patch_size=4, embed_dim=32, depth=4, num_heads=2)


@pytest.fixture
def tiny_vit():
    """A 4-block, 32-wide timm ViT on 16 px inputs (pretrained=False), in eval mode."""
    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, **TINY).eval()
