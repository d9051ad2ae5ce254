"""FedAvg full fine-tuning (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS, Alg. 1). Card: ``baselines/README.md``.

Every client holds the whole model and trains all parameters for ``local_epochs`` epochs; the server
averages the full model weighted by sample count. Traffic per round: the full model down and up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.accounting.flops import FlopCount, training_flops
from benchmark.config import RunConfig
from benchmark.federation.method import ClientUpdate, register_method, Method, Transfer, image_input
from benchmark.models.split import SplitViT

@register_method("fedavg")
class FedAvg(Method):
    """Federated full fine-tuning: all parameters on the client, FedAvg over the full model."""

    label = "FedAvg"
    order = 10
    client_prefixes = ("head.", "body.", "tail.")
    uses_prompts = False
    phase = "local"

    @classmethod
    def per_sample_costs(cls, model: SplitViT, cfg: RunConfig) -> dict[str, tuple[str, FlopCount]]:
        return {f"{cls.phase}/client": ("client", training_flops(model, image_input(model)))}

    @classmethod
    def expected_samples(cls, cfg: RunConfig, samples: int, first: bool = False) -> dict[str, int]:
        return {cls.phase: samples * cfg.train.local_epochs}

    @classmethod
    def expected_transfers(cls, model: SplitViT, cfg: RunConfig, samples: int) -> list[Transfer]:
        out = []
        for kind in ("params", "prompts"):
            n = sum(p.numel() for k, p in model.named_parameters()
                    if cls.is_client_param(k) and (".prompts." in k) == (kind == "prompts"))
            if n:
                out += [Transfer("broadcast", "down", kind, torch.float32, n, 1),
                        Transfer("upload", "up", kind, torch.float32, n, 1)]
        return out

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The local objective of one batch (mean cross-entropy); a variant extends it with ``super()`` (FedProx's
        proximal term: examples/fedprox.py)."""
        return F.cross_entropy(self.model(x), y)

    def local_update(self, rnd: int, client: int) -> ClientUpdate:
        idx = self.data.client_indices[client]
        opt = self.optimizer(self.trainable(self.global_client))

        def batch_step(epoch: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            loss = self.loss(x, y)
            loss.backward()
            self.step(opt)
            return loss

        loss = self.train_epochs(rnd, client, idx, self.t.local_epochs, self.phase, batch_step)
        return ClientUpdate(samples=len(idx), loss=loss)
