"""SplitFed (Thapa et al. 2022, "SplitFed: When Federated Learning Meets Split Learning", AAAI):
SFL-V1 and SFL-V2. Card: ``baselines/README.md``.

Client = patch embedding + position embeddings + the first ``head_blocks`` blocks (the suite's head);
server = everything after the cut, classifier included (the suite's body + tail). All parameters train.
Per batch the client sends the smashed data and the labels up and receives the gradient at the cut.
A fed server averages the client parts each round (FedAvg, weighted by samples).

* **SFL-V1**: the main server keeps one copy of its part per client, trains them in parallel and averages
  them at the end of the round. Simulated sequentially: each client's copy starts from the round's global
  server part, so the order of clients does not matter, as in the parallel original.
* **SFL-V2**: one server part, trained by the clients' batches in turn (sequential, in sampled order).

Departures: no prompts (``prompt_len`` is ignored); a fresh SGD optimiser per client and round on both
sides; ``tail_blocks`` only decides where the server's body ends, which changes nothing here because the
server holds body and tail.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmark.accounting.flops import FlopCount, training_flops
from benchmark.config import RunConfig
from benchmark.federation.method import ClientUpdate, register_method, Method, Transfer, image_input, token_input
from benchmark.models.split import SplitViT


class SplitFed(Method):
    """Shared SplitFed logic; the two versions differ only in ``server_copies``."""

    client_prefixes = ("head.",)
    server_prefixes = ("body.", "tail.")
    uses_prompts = False
    phase = "split"

    @classmethod
    def per_sample_costs(cls, model: SplitViT, cfg: RunConfig) -> dict[str, tuple[str, FlopCount]]:
        return {
            "split/client": ("client", training_flops(model.head, image_input(model))),
            "split/server": ("server", training_flops(model.server_path, token_input(model), upstream_trainable=True)),
        }

    @classmethod
    def expected_samples(cls, cfg: RunConfig, samples: int) -> dict[str, int]:
        return {cls.phase: samples * cfg.train.local_epochs}

    @classmethod
    def expected_transfers(cls, model: SplitViT, cfg: RunConfig, samples: int) -> list[Transfer]:
        n_params = sum(p.numel() for k, p in model.named_parameters() if cls.is_client_param(k))
        seen = samples * cfg.train.local_epochs
        batches = math.ceil(samples / cfg.train.batch_size) * cfg.train.local_epochs
        act = seen * model.num_tokens * model.embed_dim
        return [
            Transfer("broadcast", "down", "params", torch.float32, n_params, 1),
            Transfer("split", "up", "smashed", torch.float32, act, batches),
            Transfer("split", "up", "labels", torch.int64, seen, batches),
            Transfer("split", "down", "grad", torch.float32, act, batches),
            Transfer("upload", "up", "params", torch.float32, n_params, 1),
        ]

    def local_update(self, rnd: int, client: int) -> ClientUpdate:
        idx = self.data.client_indices[client]
        client_opt = self.optimizer(self.trainable(self.global_client))
        server_opt = self.optimizer(self.trainable(self.server_keys()))
        loss_sum, n = torch.zeros((), device=self.device), 0
        for epoch in range(self.t.local_epochs):
            for x, y in self.batches(idx, rnd, client, epoch):
                h = self.model.head(x)  # client forward
                smashed = h.detach().requires_grad_(True)
                self.comm.record(rnd, client, self.phase, "up", "smashed", smashed)
                self.comm.record(rnd, client, self.phase, "up", "labels", y)
                loss = F.cross_entropy(self.model.server_path(smashed), y)  # server forward + loss
                loss.backward()  # server backward: its weights and the gradient at the cut
                self.comm.record(rnd, client, self.phase, "down", "grad", smashed.grad)
                h.backward(smashed.grad)  # client backward
                self.step(server_opt)
                self.step(client_opt)
                loss_sum += loss.detach() * len(y)
                n += len(y)
        self.record_compute(rnd, client, self.phase, n)
        return ClientUpdate(samples=len(idx), loss=self.check_loss(loss_sum, rnd, client) / max(n, 1))


@register_method("sfl_v1")
class SFLV1(SplitFed):
    """SFL-V1: a server copy per client, averaged each round."""

    server_copies = "per_client"


@register_method("sfl_v2")
class SFLV2(SplitFed):
    """SFL-V2: one server part, clients served in turn."""

    server_copies = "shared"
