"""FLOP accounting ground truth: hand-derived counts and torch's FlopCounterMode on a real backward.

All counts use fvcore's convention (1 FLOP = 1 multiply-add); FlopCounterMode's are halved.
"""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from torch import nn

from benchmark.accounting.flops import (
    FLOP_CONVENTION,
    FlopCount,
    cross_check_flop_counter,
    forward_flops,
    training_flops,
    unfused_attention,
)

# The tiny ViT of the brief: 32 px, patch 8 -> 16 patches + CLS = 17 tokens, width 64, 2 blocks, 2 heads.
IMG, PATCH, D, DEPTH, HEADS, CLASSES = 32, 8, 64, 2, 2, 10
PATCHES = (IMG // PATCH) ** 2
N = PATCHES + 1
HEAD_DIM = D // HEADS
MLP = 4 * D


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=IMG, patch_size=PATCH, embed_dim=D,
        depth=DEPTH, num_heads=HEADS, num_classes=CLASSES,
    ).eval()


def image(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, IMG, IMG)


def layer_norm_flops(tokens: int) -> int:
    """fvcore: numel x 5 per affine LayerNorm; 2 per block + the final norm."""
    return (2 * DEPTH + 1) * tokens * D * 5


def matmul_flops(tokens: int) -> tuple[int, int]:
    """(linear + conv, attention matmuls) forward FLOPs of the tiny ViT with ``tokens`` tokens."""
    conv = PATCHES * (3 * PATCH * PATCH) * D
    per_block_linear = tokens * D * 3 * D + tokens * D * D + 2 * tokens * D * MLP  # qkv, proj, fc1, fc2
    per_block_attn = 2 * HEADS * tokens * tokens * HEAD_DIM  # q @ k^T and attn @ v
    head = D * CLASSES  # classifier on the pooled CLS token
    return conv + DEPTH * per_block_linear + head, DEPTH * per_block_attn


def loss_fn(out: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(out, torch.zeros(out.shape[0], dtype=torch.long))


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


# ---------------------------------------------------------------------------------------------- (a)
@pytest.mark.parametrize("upstream", [False, True])
@pytest.mark.parametrize("trainable", [False, True])
def test_linear_hand_derived(upstream: bool, trainable: bool) -> None:
    batch, fin, fout = 4, 5, 3
    lin = nn.Linear(fin, fout)
    lin.requires_grad_(trainable)
    fc = training_flops(lin, (torch.randn(batch, fin),), upstream_trainable=upstream)
    f = batch * fin * fout  # one multiply-add per (sample, in, out); bias not counted by fvcore
    assert fc.forward == f
    assert fc.backward_activation == (f if upstream else 0)  # dX = dY W: only if X needs a gradient
    assert fc.backward_weight == (f if trainable else 0)  # dW = dY^T X
    assert fc.total == f + fc.backward_activation + fc.backward_weight
    assert fc.unsupported == {}


# ---------------------------------------------------------------------------------------------- (b)
def test_tiny_vit_forward_hand_derived() -> None:
    linear, attn = matmul_flops(N)
    fc = forward_flops(tiny_vit(), (image(),))
    assert fc.forward == linear + attn + layer_norm_flops(N)
    assert fc.backward == 0
    assert "fvcore" in FLOP_CONVENTION


def test_counts_are_linear_in_batch() -> None:
    model = tiny_vit()
    one = training_flops(model, (image(1),))
    four = training_flops(model, (image(4),))
    assert (four.forward, four.backward_activation, four.backward_weight) == (
        4 * one.forward, 4 * one.backward_activation, 4 * one.backward_weight,
    )
    assert one.scaled(4) == FlopCount(four.forward, four.backward_activation, four.backward_weight, one.unsupported)


# ---------------------------------------------------------------------------------------------- (c), (d)
# Tolerance: FlopCounterMode counts only matmul-like ops (mm/addmm/bmm/conv/attention), never LayerNorm,
# while fvcore counts LayerNorm as 5 x numel. Everything else agrees exactly, so ours exceeds theirs by the
# norms' share (about 1.5% here); we assert the exact identity *and* a 3% relative bound.
def test_full_finetuning_matches_flop_counter_mode() -> None:
    model = tiny_vit()
    ours, theirs = cross_check_flop_counter(model, (image(),), loss_fn)
    # Full fine-tuning: every LayerNorm has forward + input grad + affine grad.
    assert ours - 3 * layer_norm_flops(N) == theirs
    assert abs(ours - theirs) / theirs < 0.03
    linear, attn = matmul_flops(N)
    conv = PATCHES * (3 * PATCH * PATCH) * D
    fc = training_flops(model, (image(),))
    assert fc.backward_weight == linear + layer_norm_flops(N)  # every weight trains
    # The patch embedding's input is the image: no activation gradient there; attention matmuls: 2F.
    assert fc.backward_activation == linear - conv + 2 * attn + layer_norm_flops(N)
    assert all(p.grad is None for p in model.parameters())  # cross-check leaves no gradients behind


def test_cross_check_restores_the_gradients_it_found_and_prints_nothing(capsys: pytest.CaptureFixture) -> None:
    model = tiny_vit()
    found = {n: torch.full_like(p, 0.5) for n, p in model.named_parameters()}
    for n, p in model.named_parameters():
        p.grad = found[n]
    ours, theirs = cross_check_flop_counter(model, (image(),), loss_fn)
    assert all(p.grad is found[n] for n, p in model.named_parameters())  # the very tensors, untouched
    assert isinstance(theirs, int) and 0 < theirs < ours
    assert capsys.readouterr().out == ""  # FlopCounterMode(display=False): no table on stdout


def test_frozen_backbone_head_only() -> None:
    model = tiny_vit()
    freeze(model)
    model.head.requires_grad_(True)
    fc = training_flops(model, (image(),))
    assert fc.backward_activation == 0
    assert fc.backward_weight == fc.backward == D * CLASSES  # only dW of the classifier
    ours, theirs = cross_check_flop_counter(model, (image(),), loss_fn)
    assert ours - layer_norm_flops(N) == theirs
    assert abs(ours - theirs) / theirs < 0.03


class PromptTokensModule(nn.Module):
    """Zero-FLOP module inserting ``length`` trainable tokens after the CLS token."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.tokens = nn.Parameter(torch.randn(1, length, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, :1], self.tokens.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)


class PromptedViT(nn.Module):
    """VPT-shallow over a timm ViT: trainable tokens enter before the first block.

    ``as_submodule=False`` keeps the tokens as a direct parameter of this container (used before its
    children run), which the counter must detect by the tokens' first use, not by module completion.
    """

    def __init__(self, vit: nn.Module, length: int, as_submodule: bool = True) -> None:
        super().__init__()
        self.vit = vit
        if as_submodule:
            self.prompt = PromptTokensModule(length, vit.embed_dim)
        else:
            self.prompt = None
            self.tokens = nn.Parameter(torch.randn(1, length, vit.embed_dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.vit._pos_embed(self.vit.patch_embed(x))
        if self.prompt is not None:
            x = self.prompt(x)
        else:
            x = torch.cat([x[:, :1], self.tokens.expand(x.shape[0], -1, -1), x[:, 1:]], dim=1)
        x = self.vit.norm(self.vit.blocks(x))
        return self.vit.forward_head(x)


@pytest.mark.parametrize("as_submodule", [True, False])
def test_trainable_prompt_matches_flop_counter_mode(as_submodule: bool) -> None:
    length = 3
    vit = tiny_vit()
    freeze(vit)
    vit.head.requires_grad_(True)
    model = PromptedViT(vit, length, as_submodule)
    tokens = N + length
    linear, attn = matmul_flops(tokens)
    conv = PATCHES * (3 * PATCH * PATCH) * D
    fc = training_flops(model, (image(),))
    assert fc.forward == linear + attn + layer_norm_flops(tokens)
    # Everything after the prompts back-propagates to them; only the classifier has a weight gradient.
    assert fc.backward_activation == linear - conv + 2 * attn + layer_norm_flops(tokens)
    assert fc.backward_weight == D * CLASSES
    ours, theirs = cross_check_flop_counter(model, (image(),), loss_fn)
    assert ours - 2 * layer_norm_flops(tokens) == theirs  # norms: forward + input grad, frozen affine
    assert abs(ours - theirs) / theirs < 0.03


def test_upstream_trainable_frozen_body() -> None:
    """A frozen server body after a trainable client head: activation gradients only."""
    vit = tiny_vit()
    freeze(vit)
    x = torch.randn(1, N, D)
    alone = training_flops(vit.blocks, (x,))
    assert alone.backward == 0
    fc = training_flops(vit.blocks, (x,), upstream_trainable=True)
    linear, attn = matmul_flops(N)
    per_block_linear = (linear - PATCHES * 3 * PATCH * PATCH * D - D * CLASSES) // DEPTH
    ln = DEPTH * 2 * N * D * 5
    assert fc.forward == DEPTH * per_block_linear + attn + ln
    assert fc.backward_activation == DEPTH * per_block_linear + 2 * attn + ln
    assert fc.backward_weight == 0
    x.requires_grad_(True)
    ours, theirs = cross_check_flop_counter(vit.blocks, (x,), lambda out: out.sum())
    assert ours - 2 * ln == theirs


# ---------------------------------------------------------------------------------------------- (e)
def test_fused_attention_restored_and_counted() -> None:
    model = tiny_vit()
    attn_modules = [m for m in model.modules() if hasattr(m, "fused_attn")]
    assert len(attn_modules) == DEPTH
    for m in attn_modules:
        m.fused_attn = True
    fc = forward_flops(model, (image(),))
    assert all(m.fused_attn is True for m in attn_modules)
    linear, attn = matmul_flops(N)
    assert fc.forward == linear + attn + layer_norm_flops(N)  # attention matmuls were not dropped

    with pytest.raises(RuntimeError), unfused_attention(model):
        assert all(m.fused_attn is False for m in attn_modules)
        raise RuntimeError("boom")
    assert all(m.fused_attn is True for m in attn_modules)


# ---------------------------------------------------------------------------------------------- (f)
class UsesSin(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.lin(x))


def test_unsupported_ops_reported_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        fc = training_flops(UsesSin(), (torch.randn(2, 4),))
    assert fc.unsupported == {"aten::sin": 1}
    assert fc.forward == 2 * 4 * 4
    assert not [r for r in caplog.records if r.name.startswith("fvcore")]
    vit_ops = forward_flops(tiny_vit(), (image(),)).unsupported
    assert vit_ops["aten::softmax"] == DEPTH and vit_ops["aten::gelu"] == DEPTH


# ---------------------------------------------------------------------------------------------- arithmetic
def test_flop_count_arithmetic() -> None:
    a = FlopCount(10, 20, 30, {"aten::add": 1})
    b = FlopCount(1, 2, 3, {"aten::add": 2, "aten::sin": 1})
    s = a + b
    assert (s.forward, s.backward_activation, s.backward_weight) == (11, 22, 33)
    assert s.unsupported == {"aten::add": 3, "aten::sin": 1}
    assert a.backward == 50 and a.total == 60
    assert a.scaled(2.5) == FlopCount(25, 50, 75, {"aten::add": 1})
    with pytest.raises(ValueError):
        a.scaled(-1)
    assert a.scaled(0) == FlopCount(0, 0, 0, {"aten::add": 1})  # a phase that ran on no sample costs nothing
