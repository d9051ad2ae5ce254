"""FedAvg aggregation (McMahan et al. 2017, Alg. 1): a weighted average of client states.

Kept as a running sum so that memory does not grow with the number of clients: one accumulator the size
of the averaged state, whatever the round's participation.
"""

from __future__ import annotations

import torch

from benchmark.errors import BenchmarkError


class WeightedAverage:
    """Running weighted average of state dicts (float64 accumulation, result in each tensor's dtype)."""

    def __init__(self) -> None:
        self._sum: dict[str, torch.Tensor] = {}
        self._dtypes: dict[str, torch.dtype] = {}
        self.total_weight = 0.0
        self.count = 0

    def add(self, state: dict[str, torch.Tensor], weight: float) -> None:
        if weight <= 0:
            raise BenchmarkError(f"aggregation weight must be > 0, got {weight}")
        for k, v in state.items():
            v64 = v.detach().to(torch.float64)
            if k in self._sum:
                self._sum[k].add_(v64, alpha=weight)
            else:
                self._sum[k] = v64 * weight
                self._dtypes[k] = v.dtype
        self.total_weight += weight
        self.count += 1

    def result(self) -> dict[str, torch.Tensor]:
        if self.count == 0:
            raise BenchmarkError("no client state to aggregate this round")
        return {k: (s / self.total_weight).to(self._dtypes[k]) for k, s in self._sum.items()}
