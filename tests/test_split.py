"""The head/body/tail split is the unsplit timm model (minGPT-style equivalence tests)."""

from __future__ import annotations

import pytest
import timm
import torch

from benchmark.errors import ConfigError
from benchmark.models.split import SplitViT
from tests.conftest import TINY


@pytest.mark.parametrize("head_blocks,tail_blocks", [(0, 0), (1, 1), (0, 2), (2, 1), (1, 0), (0, 3)])
def test_split_equals_unsplit(tiny_vit, head_blocks, tail_blocks):
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        ref = tiny_vit(x)
        split = SplitViT(tiny_vit, head_blocks, tail_blocks, prompt_len=0)
        out = split.tail(split.body(split.head(x)))
    assert torch.equal(out, ref)


@pytest.mark.parametrize("pool", ["token", "avg"])
def test_split_equals_unsplit_for_pooling(pool):
    torch.manual_seed(1)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, global_pool=pool, **TINY).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(SplitViT(vit, 1, 1)(x), vit(x))


def test_split_rejects_empty_body(tiny_vit):
    with pytest.raises(ConfigError, match="head_blocks \\+ model.tail_blocks"):
        SplitViT(tiny_vit, 2, 2)


def test_prompts_change_output_and_shape(tiny_vit):
    split = SplitViT(tiny_vit, 1, 1, prompt_len=3)
    x = torch.randn(2, 3, 16, 16)
    tokens = split.head(x)
    assert tokens.shape == (2, 1 + 3 + 16, 32)
    assert split.num_tokens == 20
    with torch.no_grad():
        assert not torch.allclose(split(x), tiny_vit(x))


def test_deep_prompts_have_one_set_per_client_block(tiny_vit):
    split = SplitViT(tiny_vit, 2, 1, prompt_len=2, prompt_depth="client")
    assert split.head.prompts.tokens.shape == (2, 2, 32)
    assert split.tail.prompts.tokens.shape == (1, 2, 32)
    out = split(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 5)


def test_frozen_parts_get_no_gradient(tiny_vit):
    from benchmark.methods import method_class

    split = method_class("sfprompt").set_trainability(SplitViT(tiny_vit, 1, 1, prompt_len=3))
    loss = split(torch.randn(4, 3, 16, 16)).logsumexp(-1).mean()
    loss.backward()
    for name, p in split.named_parameters():
        if name.startswith(("tail.", "head.prompts.")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


def test_client_path_skips_body(tiny_vit):
    split = SplitViT(tiny_vit, 1, 1, prompt_len=0)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(split.client_path(x), split.tail(split.head(x)))


def test_state_dict_has_no_duplicates(tiny_vit):
    split = SplitViT(tiny_vit, 1, 1, prompt_len=3)
    keys = list(split.state_dict())
    assert len(keys) == len(set(keys))
    n_params = sum(p.numel() for p in split.parameters())
    assert n_params == sum(p.numel() for p in tiny_vit.parameters()) + 3 * 32
