"""FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks", MLSys, Alg. 2): a method from
outside the package, the worked example of docs/extending.md.

FedAvg's local objective plus a proximal term that keeps each client near the global model it received:

    h_k(w; w^t) = F_k(w) + mu/2 * ||w - w^t||^2          (paper, Eq. 2)

with ``w`` the client's trainable parameters (FedAvg trains all of them) and ``w^t`` the broadcast global ones.
``mu = 0`` is FedAvg exactly. Departures: the paper's inexact local solver (a gamma-inexact minimiser, a variable
number of local steps per device) is the suite's fixed ``train.local_epochs`` of SGD, as Flower's FedProx
baseline does; the reported training loss includes the proximal term.

Use it by config alone: ``train.method: examples/fedprox.py:FedProx`` in a run config (or
``examples.fedprox:FedProx`` from the repository root), or in a profile's ``methods:``
(config/examples/fedprox.yaml). Its costs come from FedAvg's analytic hooks, which it inherits: the proximal
term is elementwise, zero FLOPs under the suite's fvcore convention, and sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.fedavg import FedAvg
from benchmark.errors import ConfigError


@dataclass(frozen=True)
class FedProxParams:
    """FedProx's own hyper-parameter (``method_params.mu``)."""

    mu: float = 0.01
    """Weight of the proximal term (paper: mu in {0.001, 0.01, 0.1, 1}; 0 is FedAvg)."""

    def __post_init__(self) -> None:
        if not self.mu >= 0:
            raise ConfigError(f"config key 'method_params.mu' must be >= 0, got {self.mu!r}")


class FedProx(FedAvg):
    """FedAvg with a proximal term on every client's local objective."""

    name = "fedprox"
    label = "FedProx"
    order = 15  # after FedAvg, before FedPrompt
    Params = FedProxParams

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # self.global_client: the state broadcast this round (w^t), the same keys FedAvg trains and averages
        prox = sum(((self._params[k] - w) ** 2).sum() for k, w in self.global_client.items())
        return super().loss(x, y) + self.p.mu / 2 * prox
