"""SFPrompt's head / body / tail split of a timm ViT, cut along timm's own seams.

Paper (Cao et al., arXiv 2407.17533, Sec. "System model"): the client holds W_C = [W_h, W_t] and the
learnable prompts p; the server holds the body W_b. Here:

* **head** = ``patch_embed`` + ``_pos_embed`` (CLS and position embeddings) + prompts + ``patch_drop`` +
  ``norm_pre`` + the first ``head_blocks`` blocks;
* **body** = the middle blocks;
* **tail** = the last ``tail_blocks`` blocks + final ``norm`` + timm's ``forward_head`` (pooling,
  ``fc_norm``, classifier).

The segments are real ``nn.Module``s that *share* the timm modules (no copy), so the FLOP counter, the
optimisers and the state dicts see exactly the parameters each party holds. With ``prompt_len = 0`` the
composition head -> body -> tail is the unsplit timm forward, bit for bit (tested).

Departure: prompt tokens are dropped again before pooling, so average pooling (``global_pool='avg'``)
averages the backbone's own tokens only; with token (CLS) pooling this changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from benchmark.config import check_split_depth
from benchmark.models.prompts import PromptTokens

if TYPE_CHECKING:  # annotations only: the workflow's parse imports this module and never builds a model
    from timm.models.vision_transformer import VisionTransformer


def _patch_size(vit: VisionTransformer) -> int:
    ps = getattr(vit.patch_embed, "patch_size", (16, 16))
    return int(ps[0] if isinstance(ps, (tuple, list)) else ps)


class Head(nn.Module):
    """Client head: embeddings, (optional) prompts, and the first blocks."""

    def __init__(self, vit: VisionTransformer, num_blocks: int, prompts: PromptTokens | None) -> None:
        super().__init__()
        object.__setattr__(self, "_vit", vit)  # unregistered: used only to call timm's _pos_embed seam
        self.patch_embed = vit.patch_embed
        # The embedding parameters belong to the head; _pos_embed reads the very same Parameter objects.
        for name in ("cls_token", "reg_token", "pos_embed"):
            p = getattr(vit, name, None)
            if p is not None:
                self.register_parameter(name, p)
        self.pos_drop = vit.pos_drop
        self.patch_drop = vit.patch_drop
        self.norm_pre = vit.norm_pre
        self.blocks = nn.Sequential(*list(vit.blocks)[:num_blocks])
        self.prompts = prompts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = self._vit._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        if self.prompts is not None:
            x = self.prompts(x, 0)
        for i, blk in enumerate(self.blocks):
            if self.prompts is not None and i > 0 and i < self.prompts.tokens.shape[0]:
                x = self.prompts(x, i)  # VPT-deep on client blocks
            x = blk(x)
        return x


class Body(nn.Module):
    """Server body: the middle blocks (frozen in SFPrompt)."""

    def __init__(self, vit: VisionTransformer, start: int, stop: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*list(vit.blocks)[start:stop])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Tail(nn.Module):
    """Client tail: the last blocks, the final norm and timm's classifier head."""

    def __init__(self, vit: VisionTransformer, start: int, prompts: PromptTokens | None, prompt_len: int) -> None:
        super().__init__()
        object.__setattr__(self, "_vit", vit)  # unregistered: used only to call timm's forward_head seam
        self.blocks = nn.Sequential(*list(vit.blocks)[start:])
        self.norm = vit.norm
        self.fc_norm = vit.fc_norm
        self.head_drop = vit.head_drop
        self.attn_pool = vit.attn_pool
        self.head = vit.head
        self.prompts = prompts
        self.prompt_len = prompt_len
        self.num_prefix_tokens = vit.num_prefix_tokens

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, blk in enumerate(self.blocks):
            if self.prompts is not None:
                x = self.prompts(x, i)  # VPT-deep on client blocks
            x = blk(x)
        x = self.norm(x)
        if self.prompt_len:
            p = self.num_prefix_tokens
            x = torch.cat([x[:, :p], x[:, p + self.prompt_len:]], dim=1)
        return self._vit.forward_head(x)


class Chain(nn.Module):
    """Segments applied in order, e.g. head -> tail (SFPrompt's client path, body skipped) or
    body -> tail (SplitFed's server part)."""

    def __init__(self, *segments: nn.Module) -> None:
        super().__init__()
        self.segments = nn.ModuleList(segments)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for seg in self.segments:
            x = seg(x)
        return x


class SplitViT(nn.Module):
    """A timm ViT cut into head, body and tail, with optional VPT prompts on the client.

    Args:
        vit: The timm backbone (its modules are shared, not copied).
        head_blocks: Blocks in the head (>= 0).
        tail_blocks: Blocks in the tail (>= 0); ``head_blocks + tail_blocks`` must be below the depth
            so that the server's body holds at least one block.
        prompt_len: Prompt tokens (0: none).
        prompt_depth: ``shallow`` or ``client`` (see :mod:`benchmark.models.prompts`).
    """

    def __init__(
        self,
        vit: VisionTransformer,
        head_blocks: int = 1,
        tail_blocks: int = 1,
        prompt_len: int = 0,
        prompt_depth: str = "shallow",
    ) -> None:
        super().__init__()
        depth = len(vit.blocks)
        check_split_depth(head_blocks, tail_blocks, depth)
        self.depth, self.head_blocks, self.tail_blocks = depth, head_blocks, tail_blocks
        self.prompt_len, self.prompt_depth = prompt_len, prompt_depth
        dim, ps, npt = vit.embed_dim, _patch_size(vit), vit.num_prefix_tokens
        head_prompts = tail_prompts = None
        if prompt_len > 0:
            head_sets = max(1, head_blocks) if prompt_depth == "client" else 1
            head_prompts = PromptTokens(head_sets, prompt_len, dim, ps, npt, first_inserts=True)
            if prompt_depth == "client" and tail_blocks > 0:
                tail_prompts = PromptTokens(tail_blocks, prompt_len, dim, ps, npt, first_inserts=False)
        self.head = Head(vit, head_blocks, head_prompts)
        self.body = Body(vit, head_blocks, depth - tail_blocks)
        self.tail = Tail(vit, depth - tail_blocks, tail_prompts, prompt_len)
        # Not registered as children: their modules are already registered above.
        object.__setattr__(self, "client_path", Chain(self.head, self.tail))
        object.__setattr__(self, "server_path", Chain(self.body, self.tail))
        self.num_classes = vit.num_classes
        self.embed_dim = dim
        self.num_tokens = vit.patch_embed.num_patches + npt + prompt_len
        """Tokens per sample crossing the cut (patches + prefix + prompts)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))
