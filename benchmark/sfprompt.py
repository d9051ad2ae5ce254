"""SFPrompt (Cao, Zhu, Gong, arXiv 2407.17533): split federated prompt fine-tuning.

The client holds the frozen head W_h, the trainable tail W_t and the soft prompts p; the server holds the
frozen body W_b. Each round, for each sampled client k (paper, Sec. "SFPrompt", three phases):

1. **Client self-update.**
   (a) *Local-loss update*: ``local_loss_epochs`` epochs minimising L_C = (1/|D_k|) Σ ℓ(x; W_h, W_t, p) with
   the head -> tail path (body skipped), without talking to the server.
   (b) *Dataset pruning*: EL2N scores ``||softmax(f(x)) - onehot(y)||_2`` (Paul et al. 2021) of every local
   sample under the client model f = head -> tail; the ``keep_ratio`` fraction with the highest scores is
   kept.
2. **Split training** for ``split_epochs`` on the kept samples: smashed data (head output) up, body output
   down; the client computes the loss and updates tail (and prompts). With ``prompt_grad_via_server`` the
   client also sends the gradient at the tail input up, the server back-propagates it through its frozen
   body (activation gradients only) and sends the gradient at the head output down, so the prompts get the
   true gradient of the full model.
3. **Aggregation**: tail + prompts go up and are averaged (FedAvg, weighted by the samples split-trained).

What the paper leaves open is a knob of :class:`SFPromptParams` (``method_params`` in a run config); the
defaults are the paper's reading (``shared/PAPER.md``): the local loss over *all* local samples (L_C is
defined over D_k) and pruning *after* it, in the order the paper lists the two steps. :meth:`SFPrompt.readings`
names the other defensible readings, over which the claims table gives the range of each cost claim. At least
one sample is kept (``ceil(keep_ratio × n)``). Each phase uses a fresh optimiser. EL2N is scored in eval mode
without gradients (except ``el2n_timing: local_loss_pass``, which takes the scores from the training forward).
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
from benchmark.federation.params import SFPromptParams
from benchmark.models.split import SplitViT

def el2n_scores(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """EL2N (Paul et al. 2021, Eq. 2): L2 norm of the error vector softmax(logits) - onehot(labels)."""
    err = logits.detach().float().softmax(-1)
    err[torch.arange(len(labels), device=labels.device), labels] -= 1.0
    return err.norm(dim=-1)


def kept_count(n: int, keep_ratio: float) -> int:
    """Samples kept by pruning: ``ceil(keep_ratio × n)``, at least one (for a non-empty client)."""
    return 0 if n == 0 else max(1, math.ceil(keep_ratio * n - 1e-9))


def top_scored(idx: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` indices with the highest scores, sorted; a stable sort on the negated score keeps ties in index
    order, so pruning is deterministic."""
    return np.sort(idx[np.argsort(-score, kind="stable")[:k]])


@register_method("sfprompt")
class SFPrompt(Method):
    """SFPrompt: frozen head and body, trainable tail + prompts on the client, three-phase rounds."""

    label = "SFPrompt"
    order = 50
    client_prefixes = ("tail.", "head.prompts.")
    client_stores = ("head.", "tail.")
    uses_prompts = True
    Params = SFPromptParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._kept: dict[int, np.ndarray] = {}
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ settings
    @classmethod
    def _prompt_grad(cls, cfg: RunConfig) -> bool:
        return cls.params(cfg).prompt_grad_via_server and cfg.model.prompt_len > 0

    @classmethod
    def readings(cls) -> dict[str, dict[str, Any]]:
        """The defensible readings of the paper's round (PAPER.md and issue #16): phase order, which samples
        the local loss sees, and whether EL2N is re-scored every round. The default reading is ``paper``."""
        paper = {"el2n_timing": "after_local_loss", "local_loss_samples": "all", "el2n_every_round": True}
        return {
            "paper": paper,
            "score_first_local_all": {**paper, "el2n_timing": "before_local_loss"},
            "score_first_local_kept": {**paper, "el2n_timing": "before_local_loss", "local_loss_samples": "kept"},
            "scores_from_local_pass": {**paper, "el2n_timing": "local_loss_pass"},
            "score_once": {**paper, "el2n_every_round": False},
            "score_first_local_kept_once": {**paper, "el2n_timing": "before_local_loss",
                                            "local_loss_samples": "kept", "el2n_every_round": False},
            "paper_minimal_traffic": {**paper, "minimal_traffic": True},
        }

    def check_settings(self) -> Iterable[str]:
        m = self.cfg.model
        pool = getattr(self.model.tail._vit, "global_pool", "token")
        if m.head_blocks == 0 and m.tail_blocks == 0 and pool == "token":
            yield (
                "sfprompt: head_blocks = tail_blocks = 0 with token (CLS) pooling: the local-loss path "
                "classifies the input-layer CLS token, identical for every image, so the local-loss update "
                "and the EL2N scores are degenerate (pruning keeps an arbitrary subset)"
            )

    # ------------------------------------------------------------------ what crosses the cut
    @staticmethod
    def _rows(model: SplitViT, cfg: RunConfig, p: SFPromptParams) -> dict[str, int]:
        """Token rows per sample of each split-training message (all of them unless ``minimal_traffic``)."""
        n = model.num_tokens
        rows = {"smashed": n, "body_out": n, "grad_up": n, "grad_down": n}
        if not p.minimal_traffic:
            return rows
        vit = model.tail._vit
        if model.tail_blocks == 0 and getattr(vit, "global_pool", "token") == "token":
            rows["body_out"] = rows["grad_up"] = vit.num_prefix_tokens
        if model.head_blocks == 0 and model.prompt_len > 0:
            rows["grad_down"] = model.prompt_len
        return rows

    @staticmethod
    def _row_slice(model: SplitViT, kind: str, rows: int) -> slice:
        """Which token rows a minimal message carries: the prefix rows, or the prompt rows after them."""
        if kind == "grad_down" and rows == model.prompt_len and rows != model.num_tokens:
            start = model.tail._vit.num_prefix_tokens
            return slice(start, start + rows)
        return slice(0, rows)

    def _send(self, rnd: int, client: int, direction: str, kind: str, ledger_kind: str,
              tensor: torch.Tensor, rows: dict[str, int]) -> torch.Tensor:
        """Record the message as sent and return what the receiver reconstructs from it (zeros in the rows
        that are not sent, which the receiver never reads)."""
        n = rows[kind]
        if n == tensor.shape[1]:
            self.comm.record(rnd, client, "split", direction, ledger_kind, tensor)
            return tensor
        sl = self._row_slice(self.model, kind, n)
        sent = tensor[:, sl].contiguous()
        self.comm.record(rnd, client, "split", direction, ledger_kind, sent)
        full = torch.zeros_like(tensor)
        full[:, sl] = sent
        return full

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
    def expected_samples(cls, cfg: RunConfig, samples: int, first: bool = False) -> dict[str, int]:
        p = cls.params(cfg)
        kept = kept_count(samples, p.keep_ratio)
        scoring = p.el2n_every_round or first
        local = (samples if p.local_loss_samples == "all" else kept) * p.local_loss_epochs
        warmup = samples * p.el2n_warmup_epochs if first else 0
        el2n = samples if scoring and p.el2n_timing != "local_loss_pass" else 0
        return {"el2n": el2n, "local_loss": local + warmup, "split": kept * p.split_epochs}

    @classmethod
    def expected_transfers(cls, model: SplitViT, cfg: RunConfig, samples: int) -> list[Transfer]:
        p = cls.params(cfg)
        kept = kept_count(samples, p.keep_ratio)
        batches = math.ceil(kept / cfg.train.batch_size) * p.split_epochs
        seen = kept * p.split_epochs
        rows = cls._rows(model, cfg, p)
        act = {k: seen * r * model.embed_dim for k, r in rows.items()}
        f32 = torch.float32
        n_prompts = sum(q.numel() for k, q in model.named_parameters() if cls.is_client_param(k) and ".prompts." in k)
        n_params = sum(q.numel() for k, q in model.named_parameters() if cls.is_client_param(k)) - n_prompts
        out = [Transfer("broadcast", "down", "params", f32, n_params, 1)]
        if n_prompts:
            out.append(Transfer("broadcast", "down", "prompts", f32, n_prompts, 1))
        out += [Transfer("split", "up", "smashed", f32, act["smashed"], batches),
                Transfer("split", "down", "body_out", f32, act["body_out"], batches)]
        if cls._prompt_grad(cfg):
            out += [Transfer("split", "up", "grad", f32, act["grad_up"], batches),
                    Transfer("split", "down", "grad", f32, act["grad_down"], batches)]
        out.append(Transfer("upload", "up", "params", f32, n_params, 1))
        if n_prompts:
            out.append(Transfer("upload", "up", "prompts", f32, n_prompts, 1))
        return out

    # ------------------------------------------------------------------ phase 1: client self-update
    @torch.no_grad()
    def score(self, rnd: int, client: int) -> np.ndarray:
        """Phase 1(b): EL2N scores of all local samples under head -> tail (eval mode, no gradients)."""
        idx = self.data.client_indices[client]
        self.model.eval()
        scores = [el2n_scores(self.model.client_path(x), y)
                  for x, y in self.data.batches(idx, self.t.eval_batch_size, self.device, None)]
        self.record_compute(rnd, client, "el2n", len(idx))
        self.model.train()
        return torch.cat(scores).cpu().numpy() if scores else np.zeros(0)

    def keep(self, client: int, score: np.ndarray) -> np.ndarray:
        """Keep the ``keep_ratio`` hardest samples (by ``score``, aligned with the client's sorted indices)."""
        idx = self.data.client_indices[client]
        kept = top_scored(idx, score, kept_count(len(idx), self.p.keep_ratio))
        self._kept[client] = kept
        return kept

    def local_loss_update(self, rnd: int, client: int, samples: np.ndarray, epochs: int, stream: str = "local_loss",
                          score_last_epoch: bool = False) -> tuple[float, np.ndarray | None]:
        """Phase 1(a): train tail + prompts on head -> tail (body skipped), no communication. With
        ``score_last_epoch``, also return the EL2N score of every sample from its last-epoch logits (taken
        before that batch's step), aligned with ``samples``."""
        opt = self.optimizer(self.trainable(self.global_client))
        scores = np.zeros(len(samples)) if score_last_epoch else None
        where = {int(s): i for i, s in enumerate(samples)} if score_last_epoch else {}

        def batch_step(epoch: int, x: torch.Tensor, y: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            logits = self.model.client_path(x)
            loss = F.cross_entropy(logits, y)
            if score_last_epoch and epoch == epochs - 1:
                scores[[where[int(i)] for i in b]] = el2n_scores(logits, y).cpu().numpy()
            loss.backward()
            self.step(opt)
            return loss

        loss = self.train_epochs(rnd, client, samples, epochs, "local_loss", batch_step, stream=stream,
                                 with_index=True)
        return loss, scores

    def self_update(self, rnd: int, client: int) -> tuple[np.ndarray, dict[str, float]]:
        """Phase 1 in the configured order; returns the kept samples and per-client metrics."""
        p, idx = self.p, self.data.client_indices[client]
        first = client not in self._kept
        due = p.el2n_every_round or first
        extra: dict[str, float] = {}
        if first and p.el2n_warmup_epochs:
            extra["warmup_loss"], _ = self.local_loss_update(rnd, client, idx, p.el2n_warmup_epochs, "warmup")
        if not due:
            kept = self._kept[client]
            if p.local_loss_epochs:
                local = idx if p.local_loss_samples == "all" else kept
                extra["local_loss"], _ = self.local_loss_update(rnd, client, local, p.local_loss_epochs)
        elif p.el2n_timing == "before_local_loss":
            kept = self.keep(client, self.score(rnd, client))
            if p.local_loss_epochs:
                local = idx if p.local_loss_samples == "all" else kept
                extra["local_loss"], _ = self.local_loss_update(rnd, client, local, p.local_loss_epochs)
        elif p.el2n_timing == "after_local_loss":
            if p.local_loss_epochs:
                extra["local_loss"], _ = self.local_loss_update(rnd, client, idx, p.local_loss_epochs)
            kept = self.keep(client, self.score(rnd, client))
        else:  # local_loss_pass: the scores come from the update's own last-epoch forward pass
            extra["local_loss"], score = self.local_loss_update(rnd, client, idx, p.local_loss_epochs,
                                                                score_last_epoch=True)
            kept = self.keep(client, score)
        extra["kept"] = float(len(kept))
        return kept, extra

    # ------------------------------------------------------------------ phase 2: split training
    def split_training(self, rnd: int, client: int, kept: np.ndarray) -> float:
        """Phase 2: split training through the server's frozen body, every exchange in the ledger."""
        pg = self._prompt_grad(self.cfg)
        rows = self._rows(self.model, self.cfg, self.p)
        opt = self.optimizer(self.trainable(self.global_client))

        def batch_step(epoch: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # client: head (+ prompts) -> smashed data up
            with torch.set_grad_enabled(pg):
                h = self.model.head(x)
            # (always whole rows; with the noise defence, if set: the server's body sees what it receives)
            smashed = self.send_smashed(rnd, client, "split", h).requires_grad_(pg)
            # server: frozen body -> body output down
            with torch.set_grad_enabled(pg):
                b = self.model.body(smashed)
            body_out = self._send(rnd, client, "down", "body_out", "body_out", b.detach(), rows)
            body_out.requires_grad_(pg)
            # client: tail, loss, backward
            loss = F.cross_entropy(self.model.tail(body_out), y)
            loss.backward()
            if pg:
                grad_up = self._send(rnd, client, "up", "grad_up", "grad", body_out.grad, rows)
                b.backward(grad_up)  # server: activation gradients through the frozen body
                grad_down = self._send(rnd, client, "down", "grad_down", "grad", smashed.grad, rows)
                h.backward(grad_down)  # client: into the prompts
            self.step(opt)
            return loss

        return self.train_epochs(rnd, client, kept, self.p.split_epochs, "split", batch_step)

    def local_update(self, rnd: int, client: int) -> ClientUpdate:
        kept, extra = self.self_update(rnd, client)
        loss = self.split_training(rnd, client, kept)
        return ClientUpdate(samples=len(kept), loss=loss, extra=extra)

    # ------------------------------------------------------------------ state across rounds
    def extra_state(self) -> dict[str, Any]:
        return {"kept": {int(c): v.tolist() for c, v in self._kept.items()}}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._kept = {int(c): np.asarray(v, dtype=np.int64) for c, v in state.get("kept", {}).items()}
