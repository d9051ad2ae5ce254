"""Visual prompt tokens (VPT, Jia et al. 2022, "Visual Prompt Tuning", ECCV).

Prompt tokens are inserted after the CLS token (and any other prefix tokens), before the patch tokens.
``shallow``: one set of tokens inserted once before the first transformer block (VPT-shallow).
``client``: in addition, fresh tokens replace the prompt positions before every *client-side* block after
the first (VPT-deep restricted to the blocks the client holds: the server's frozen body never owns prompts,
as SFPrompt keeps all trainable state on the client).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class PromptTokens(nn.Module):
    """A set of ``num_sets`` × ``prompt_len`` learnable tokens of width ``embed_dim``.

    Initialised uniformly in ±sqrt(6 / (3·patch² + D)), VPT's Xavier-style rule.

    Args:
        num_sets: How many independent token sets (1 for shallow; one per client-side block for deep).
        prompt_len: Tokens per set.
        embed_dim: Token width D.
        patch_size: Patch side, used only by the initialisation rule.
        num_prefix_tokens: Tokens before the prompts (the CLS token, register tokens).
        first_inserts: Set 0 is *inserted* (the sequence grows by ``prompt_len``); every other set, and set
            0 when False, *replaces* the prompt positions.

    Calling the module (``prompts(x, index)``) rather than a helper function lets forward hooks, and so the
    FLOP counter's backward rule, see where trainable tokens enter the network.
    """

    def __init__(
        self,
        num_sets: int,
        prompt_len: int,
        embed_dim: int,
        patch_size: int,
        num_prefix_tokens: int,
        first_inserts: bool,
    ) -> None:
        super().__init__()
        self.prompt_len = prompt_len
        self.num_prefix_tokens = num_prefix_tokens
        self.first_inserts = first_inserts
        self.tokens = nn.Parameter(torch.empty(num_sets, prompt_len, embed_dim))
        bound = math.sqrt(6.0 / float(3 * patch_size * patch_size + embed_dim))
        nn.init.uniform_(self.tokens, -bound, bound)

    def forward(self, x: torch.Tensor, index: int = 0) -> torch.Tensor:
        """Insert (set 0 of an inserting module) or replace token set ``index``."""
        if index == 0 and self.first_inserts:
            return self.insert(x, 0)
        return self.replace(x, index)

    def insert(self, x: torch.Tensor, index: int = 0) -> torch.Tensor:
        """Insert token set ``index`` after the prefix tokens: (B, P+N, D) -> (B, P+L+N, D)."""
        p = self.num_prefix_tokens
        prompts = self.tokens[index].unsqueeze(0).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :p], prompts, x[:, p:]], dim=1)

    def replace(self, x: torch.Tensor, index: int) -> torch.Tensor:
        """Replace the prompt positions with token set ``index`` (VPT-deep)."""
        p, n = self.num_prefix_tokens, self.prompt_len
        prompts = self.tokens[index].unsqueeze(0).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, :p], prompts, x[:, p + n:]], dim=1)

    def remove(self, x: torch.Tensor) -> torch.Tensor:
        """Drop the prompt positions, so pooling sees the backbone's own tokens only."""
        p, n = self.num_prefix_tokens, self.prompt_len
        return torch.cat([x[:, :p], x[:, p + n:]], dim=1)
