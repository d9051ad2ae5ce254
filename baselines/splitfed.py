"""SplitFed (Thapa et al. 2022, "SplitFed: When Federated Learning Meets Split Learning", AAAI):
SFL-V1 and SFL-V2. Card: ``baselines/README.md``.

Client = patch embedding + position embeddings + the first ``head_blocks`` blocks (the suite's head);
server = everything after the cut, classifier included (the suite's body + tail). All parameters train.
Per batch the client sends the smashed data and the labels up and receives the gradient at the cut.
A fed server averages the client parts each round (FedAvg, weighted by samples).

* **SFL-V1**: the main server keeps one copy of its part per client, trains them in parallel and averages
  them at the end of the round. Simulated sequentially: each client's copy starts from the round's global
  server part, so the order of clients does not matter, as in the parallel original.
* **SFL-V2**: one server part, trained by the clients' batches in turn. As in the authors' reference code,
  the clients are served in a random order drawn each round (seeded by (seed, round)), so no client is
  always last to update the shared part (``client_order: sorted`` restores a fixed order).

Choices (``method_params``, :class:`SplitFedParams`): the server optimiser lives for one client's round
(``per_client``, our default, like every other optimiser in the suite) or for one batch (``per_batch``: the
reference code builds the server optimiser inside its per-batch training function, so momentum never
accumulates on the server). With ``train.grad_clip`` the *joint* gradient of client and server parts is
clipped (one norm over both), which is what clipping the unsplit model does, so SFL-V1 still equals FedAvg.
``tail_blocks`` only decides where the server's body ends, which changes nothing here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmark.accounting.flops import FlopCount, training_flops
from benchmark.config import RunConfig
from benchmark.federation.method import ClientUpdate, Method, Transfer, image_input, register_method, token_input
from benchmark.federation.params import SplitFedParams
from benchmark.models.split import SplitViT
from benchmark import seeding


class SplitFed(Method):
    """Shared SplitFed logic; the two versions differ only in ``server_copies``."""

    client_prefixes = ("head.",)
    server_prefixes = ("body.", "tail.")
    client_stores = ("head.",)
    uses_prompts = False
    separate_fed_server = True
    phase = "split"
    Params = SplitFedParams

    @classmethod
    def per_sample_costs(cls, model: SplitViT, cfg: RunConfig) -> dict[str, tuple[str, FlopCount]]:
        return {
            "split/client": ("client", training_flops(model.head, image_input(model))),
            "split/server": ("server", training_flops(model.server_path, token_input(model), upstream_trainable=True)),
        }

    @classmethod
    def expected_samples(cls, cfg: RunConfig, samples: int, first: bool = False) -> dict[str, int]:
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

    def client_order(self, rnd: int, clients: list[int]) -> list[int]:
        if self.p.client_order == "sorted":
            return clients
        perm = seeding.rng(self.cfg.seed, "client_order", rnd).permutation(len(clients))
        return [clients[i] for i in perm]

    def joint_step(self, client_opt: torch.optim.Optimizer, server_opt: torch.optim.Optimizer) -> None:
        """One step of both parts; ``grad_clip`` clips the norm of the joint gradient (the unsplit model's)."""
        if self.t.grad_clip is not None:
            params = [p for opt in (client_opt, server_opt) for g in opt.param_groups for p in g["params"]
                      if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.t.grad_clip)
        for opt in (server_opt, client_opt):
            opt.step()
            opt.zero_grad(set_to_none=True)

    def local_update(self, rnd: int, client: int) -> ClientUpdate:
        idx = self.data.client_indices[client]
        client_opt = self.optimizer(self.trainable(self.global_client))
        server_params = self.trainable(self.server_keys())
        server_opt = self.optimizer(server_params)

        def batch_step(epoch: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            nonlocal server_opt
            if self.p.server_optimizer == "per_batch":
                server_opt = self.optimizer(server_params)
            h = self.model.head(x)  # client forward
            # smashed data up (with the noise defence, if set): the server trains on what it receives
            smashed = self.send_smashed(rnd, client, self.phase, h).requires_grad_(True)
            self.comm.record(rnd, client, self.phase, "up", "labels", y)
            loss = F.cross_entropy(self.model.server_path(smashed), y)  # server forward + loss
            loss.backward()  # server backward: its weights and the gradient at the cut
            self.comm.record(rnd, client, self.phase, "down", "grad", smashed.grad)
            h.backward(smashed.grad)  # client backward
            self.joint_step(client_opt, server_opt)
            return loss

        loss = self.train_epochs(rnd, client, idx, self.t.local_epochs, self.phase, batch_step)
        return ClientUpdate(samples=len(idx), loss=loss)


@register_method("sfl_v1")
class SFLV1(SplitFed):
    """SFL-V1: a server copy per client, averaged each round."""

    label = "SFL-V1"
    order = 30
    server_copies = "per_client"


@register_method("sfl_v2")
class SFLV2(SplitFed):
    """SFL-V2: one server part, clients served in turn (random order each round)."""

    label = "SFL-V2"
    order = 40
    server_copies = "shared"
    critical_path = "serial_server"  # one server part: its work adds up over the clients
