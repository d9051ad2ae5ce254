"""SFPrompt (Cao, Zhu, Gong, arXiv 2407.17533): split federated prompt fine-tuning.

The client holds the frozen head W_h, the trainable tail W_t and the soft prompts p; the server holds the
frozen body W_b. Each round, for each sampled client k (paper, Sec. "SFPrompt", three phases):

1. **Client self-update.**
   (b) *Dataset pruning*: EL2N scores ``||softmax(f(x)) - onehot(y)||_2`` (Paul et al. 2021) of every
   local sample under the received client model f = head -> tail (body skipped); the ``keep_ratio``
   fraction with the highest scores is kept.
   (a) *Local-loss update*: ``local_loss_epochs`` epochs minimising L_C over the kept samples with the
   head -> tail path, without talking to the server.
2. **Split training** for ``split_epochs`` on the kept samples: smashed data (head output) up, body output
   down; the client computes the loss and updates tail (and prompts). With ``prompt_grad_via_server`` the
   client also sends the gradient at the tail input up, the server back-propagates it through its frozen
   body (activation gradients only) and sends the gradient at the head output down, so the prompts get
   the true gradient of the full model.
3. **Aggregation**: tail + prompts go up and are averaged (FedAvg).

Departures and choices (all config knobs, see ``shared/PAPER.md``): the paper gives the phase order of
pruning and local-loss update loosely; we score first, then run the local-loss update on the kept
samples (``el2n_every_round``, ``keep_ratio``, ``local_loss_epochs``). At least one sample is kept
(``ceil(keep_ratio × n)``). Each phase uses a fresh SGD optimiser. The FedAvg weight is the number of
kept samples. EL2N is scored in eval mode without gradients.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.accounting.flops import FlopCount, forward_flops, training_flops
from benchmark.config import RunConfig
from benchmark.federation.method import (
    ClientUpdate,
    Method,
    Transfer,
    image_input,
    register_method,
    token_input,
)
from benchmark.models.split import SplitViT


def el2n_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """EL2N (Paul et al. 2021, Eq. 2): L2 norm of the error vector softmax(logits) - onehot(labels)."""
    err = logits.float().softmax(-1)
    err[torch.arange(len(labels), device=labels.device), labels] -= 1.0
    return err.norm(dim=-1)


def kept_count(n: int, keep_ratio: float) -> int:
    """Samples kept by pruning: ``ceil(keep_ratio × n)``, at least one (for a non-empty client)."""
    return 0 if n == 0 else max(1, math.ceil(keep_ratio * n - 1e-9))


@register_method("sfprompt")
class SFPrompt(Method):
    """SFPrompt: frozen head and body, trainable tail + prompts on the client, three-phase rounds."""

    client_prefixes = ("tail.", "head.prompts.")
    uses_prompts = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._kept: dict[int, np.ndarray] = {}
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ settings
    @staticmethod
    def _prompt_grad(cfg: RunConfig) -> bool:
        return cfg.train.prompt_grad_via_server and cfg.model.prompt_len > 0

    def check_settings(self) -> Iterable[str]:
        m = self.cfg.model
        pool = getattr(self.model.tail._vit, "global_pool", "token")
        if m.head_blocks == 0 and m.tail_blocks == 0 and pool == "token":
            yield (
                "sfprompt: head_blocks = tail_blocks = 0 with token (CLS) pooling: the local-loss path "
                "classifies the input-layer CLS token, identical for every image, so the local-loss update "
                "and the EL2N scores are degenerate (pruning keeps an arbitrary subset)"
            )

    # ------------------------------------------------------------------ accounting
    @classmethod
    def per_sample_costs(cls, model: SplitViT, cfg: RunConfig) -> dict[str, tuple[str, FlopCount]]:
        pg = cls._prompt_grad(cfg)
        img, tok = image_input(model), token_input(model)
        return {
            "el2n/client": ("client", forward_flops(model.client_path, img)),
            "local_loss/client": ("client", training_flops(model.client_path, img)),
            "split/client": (
                "client",
                training_flops(model.head, img, backward=pg) + training_flops(model.tail, tok, upstream_trainable=pg),
            ),
            "split/server": ("server", training_flops(model.body, tok, upstream_trainable=pg, backward=pg)),
        }

    @classmethod
    def expected_samples(cls, cfg: RunConfig, samples: int) -> dict[str, int]:
        # With el2n_every_round off, a client scores only the first time it is sampled: a steady-state round
        # then has no scoring cost (the first round of each client has ``samples`` more).
        kept = kept_count(samples, cfg.train.keep_ratio)
        return {"el2n": samples if cfg.train.el2n_every_round else 0, "local_loss": kept * cfg.train.local_loss_epochs,
                "split": kept * cfg.train.split_epochs}

    @classmethod
    def expected_transfers(cls, model: SplitViT, cfg: RunConfig, samples: int) -> list[Transfer]:
        kept = kept_count(samples, cfg.train.keep_ratio)
        batches = math.ceil(kept / cfg.train.batch_size) * cfg.train.split_epochs
        act = kept * cfg.train.split_epochs * model.num_tokens * model.embed_dim
        f32 = torch.float32
        n_prompts = sum(p.numel() for k, p in model.named_parameters() if cls.is_client_param(k) and ".prompts." in k)
        n_params = sum(p.numel() for k, p in model.named_parameters() if cls.is_client_param(k)) - n_prompts
        out = [Transfer("broadcast", "down", "params", f32, n_params, 1)]
        if n_prompts:
            out.append(Transfer("broadcast", "down", "prompts", f32, n_prompts, 1))
        out += [Transfer("split", "up", "smashed", f32, act, batches),
                Transfer("split", "down", "body_out", f32, act, batches)]
        if cls._prompt_grad(cfg):
            out += [Transfer("split", "up", "grad", f32, act, batches),
                    Transfer("split", "down", "grad", f32, act, batches)]
        out.append(Transfer("upload", "up", "params", f32, n_params, 1))
        if n_prompts:
            out.append(Transfer("upload", "up", "prompts", f32, n_prompts, 1))
        return out

    # ------------------------------------------------------------------ the three phases
    @torch.no_grad()
    def prune(self, rnd: int, client: int) -> np.ndarray:
        """Phase 1(b): EL2N scores of all local samples; keep the highest ``keep_ratio`` fraction."""
        idx = self.data.client_indices[client]
        if not self.t.el2n_every_round and client in self._kept:
            return self._kept[client]
        self.model.eval()
        scores = []
        for x, y in self.data.batches(idx, self.t.eval_batch_size, self.device, None):
            scores.append(el2n_scores(self.model.client_path(x), y))
        self.record_compute(rnd, client, "el2n", len(idx))
        self.model.train()
        score = torch.cat(scores).cpu().numpy() if scores else np.zeros(0)
        k = kept_count(len(idx), self.t.keep_ratio)
        # Stable sort on the negated score: ties keep index order, so pruning is deterministic.
        kept = np.sort(idx[np.argsort(-score, kind="stable")[:k]])
        self._kept[client] = kept
        return kept

    def local_loss_update(self, rnd: int, client: int, kept: np.ndarray) -> float:
        """Phase 1(a): train tail + prompts on head -> tail (body skipped), no communication."""
        opt = self.optimizer(self.trainable(self.global_client))
        loss_sum, n = torch.zeros((), device=self.device), 0
        for epoch in range(self.t.local_loss_epochs):
            for x, y in self.batches(kept, rnd, client, epoch, stream="local_loss"):
                loss = F.cross_entropy(self.model.client_path(x), y)
                loss.backward()
                self.step(opt)
                loss_sum += loss.detach() * len(y)
                n += len(y)
        self.record_compute(rnd, client, "local_loss", n)
        return self.check_loss(loss_sum, rnd, client) / max(n, 1)

    def split_training(self, rnd: int, client: int, kept: np.ndarray) -> float:
        """Phase 2: split training through the server's frozen body, every exchange in the ledger."""
        pg = self._prompt_grad(self.cfg)
        opt = self.optimizer(self.trainable(self.global_client))
        loss_sum, n = torch.zeros((), device=self.device), 0
        for epoch in range(self.t.split_epochs):
            for x, y in self.batches(kept, rnd, client, epoch):
                # client: head (+ prompts) -> smashed data up
                with torch.set_grad_enabled(pg):
                    h = self.model.head(x)
                smashed = h.detach().requires_grad_(pg)
                self.comm.record(rnd, client, "split", "up", "smashed", smashed)
                # server: frozen body -> body output down
                with torch.set_grad_enabled(pg):
                    b = self.model.body(smashed)
                body_out = b.detach().requires_grad_(pg)
                self.comm.record(rnd, client, "split", "down", "body_out", body_out)
                # client: tail, loss, backward
                loss = F.cross_entropy(self.model.tail(body_out), y)
                loss.backward()
                if pg:
                    self.comm.record(rnd, client, "split", "up", "grad", body_out.grad)
                    b.backward(body_out.grad)  # server: activation gradients through the frozen body
                    self.comm.record(rnd, client, "split", "down", "grad", smashed.grad)
                    h.backward(smashed.grad)  # client: into the prompts
                self.step(opt)
                loss_sum += loss.detach() * len(y)
                n += len(y)
        self.record_compute(rnd, client, "split", n)
        return self.check_loss(loss_sum, rnd, client) / max(n, 1)

    def local_update(self, rnd: int, client: int) -> ClientUpdate:
        kept = self.prune(rnd, client)
        extra = {"kept": float(len(kept))}
        if self.t.local_loss_epochs > 0:
            extra["local_loss"] = self.local_loss_update(rnd, client, kept)
        loss = self.split_training(rnd, client, kept)
        return ClientUpdate(samples=len(kept), loss=loss, extra=extra)

    # ------------------------------------------------------------------ state across rounds
    def extra_state(self) -> dict[str, Any]:
        return {"kept": {int(c): v.tolist() for c, v in self._kept.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._kept = {int(c): np.asarray(v, dtype=np.int64) for c, v in state.get("kept", {}).items()}
