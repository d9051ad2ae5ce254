"""Costs of a method measured by tracing its rounds on the meta device: no data, no arithmetic, any backbone.

A method without hand-written accounting hooks (``per_sample_costs``, ``expected_samples``,
``expected_transfers``; :class:`~benchmark.federation.method.Method` falls back to this module) gets its
paper-scale numbers by running what it really runs, for one client holding ``samples`` samples, two rounds in a
row (the client's first round and a steady one), with a model on ``torch.device("meta")``:

* **FLOPs** are counted per operator with ``torch.utils.flop_counter``'s formulas (matmul-like operators:
  ``mm``, ``addmm``, ``bmm``, convolutions, attention) and **halved** to the suite's convention (fvcore's: one
  multiply-add = one FLOP; ``FlopCounterMode`` counts two). Like ``FlopCounterMode`` they leave out norms and
  elementwise operators, which the analytic hooks' fvcore counts include (about 0.2% of ViT-B/16's FLOPs).
  timm's fused attention is switched off during the trace so the attention matmuls are counted as fvcore does.
* **Party**: a forward operator belongs to the innermost module it runs in whose parameters are all on one
  side (the client holds ``client_stores``, the whole model when None; the server the rest), else the client; a
  backward operator to the party of the forward operator whose autograd node it executes.
* **Bytes** are the method's own communication ledger (every send site records tensor metadata only).

Where a method reads values back to the host (a loss for logging, EL2N scores to rank samples), the trace
hands it zeros of the right shape and dtype: a cost that depends on values (a loss threshold that stops
training early, data-dependent pruning counts) is traced at those zeros. Departure from a real run: the
backward FLOPs are not split into activation and weight gradients (``backward_weight`` is 0, the whole
backward is in ``backward_activation``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from benchmark.accounting.flops import FlopCount, unfused_attention
from benchmark.config import RunConfig
from benchmark.data.federated import FederatedData

META = torch.device("meta")
TRACED, TRACED_FIRST = "traced", "traced_first"
"""Compute-ledger phases of a method whose costs are traced: one row per client round (its first or a steady one)
and party, FLOPs = the traced round's, ``samples`` = 1 (one round)."""
PARTY = "party"
"""Key of an autograd node's ``metadata`` holding the party whose forward operator made it."""
_HOST_READS = {torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.tolist, torch.Tensor.item,
               torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__bool__, torch.Tensor.__index__}


@dataclass(frozen=True)
class RoundTrace:
    """One client's traced round: FLOPs per party (fvcore convention) and its ledger rows."""

    flops: dict[str, FlopCount]
    comm: pd.DataFrame
    """The communication ledger's frame rows of this round (``benchmark.accounting.comm.FRAME_COLUMNS``)."""


class _PartyTags(TorchFunctionMode):
    """Tags every new autograd node with the current forward party; hands zeros to host reads of meta tensors."""

    def __init__(self, current: Callable[[], str]) -> None:
        super().__init__()
        self.current = current

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if args and isinstance(args[0], torch.Tensor) and args[0].device == META and _reads_host(func, args, kwargs):
            args = (torch.zeros(args[0].shape, dtype=args[0].dtype), *args[1:])
        out = func(*args, **kwargs)
        party = self.current()
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                _tag(t.grad_fn, party)
        return out


def _reads_host(func, args: tuple, kwargs: dict) -> bool:
    if func in _HOST_READS:
        return True
    if func is torch.Tensor.to:
        target = kwargs.get("device", args[1] if len(args) > 1 else None)
        return isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"
    return False


def _tag(node: Any, party: str) -> None:
    """Tag ``node`` and every untagged node behind it (nodes made inside a composite operator)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n is None or PARTY in n.metadata:
            continue
        n.metadata[PARTY] = party
        stack += [nxt for nxt, _ in n.next_functions]


class _FlopTally(TorchDispatchMode):
    """Counts ``flop_registry`` FLOPs per (party, forward/backward), FlopCounterMode's convention (2 per MAC)."""

    def __init__(self, current: Callable[[], str]) -> None:
        super().__init__()
        self.current = current
        self.counts: dict[tuple[str, bool], int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = flop_registry.get(func._overloadpacket)
        if count is not None:
            node = torch._C._current_autograd_node()
            key = (self.current() if node is None else node.metadata.get(PARTY, self.current()), node is not None)
            self.counts[key] = self.counts.get(key, 0) + int(count(*args, **kwargs, out_val=out))
        return out


@contextlib.contextmanager
def _party_stack(model: nn.Module, client_stores: tuple[str, ...] | None) -> Iterator[Callable[[], str]]:
    """Forward hooks that keep the party of the innermost one-sided module; yields a getter of it."""
    owner = {id(p): client_stores is None or name.startswith(client_stores) for name, p in model.named_parameters()}
    stack = ["client"]
    handles = []
    for mod in model.modules():
        sides = {owner[id(p)] for p in mod.parameters()}
        if len(sides) == 1:
            party = "client" if sides.pop() else "server"
            handles.append(mod.register_forward_pre_hook(lambda m, a, p=party: stack.append(p)))
            handles.append(mod.register_forward_hook(lambda m, a, o: stack.pop() and None))  # None: keep output
    try:
        yield lambda: stack[-1]
    finally:
        for h in handles:
            h.remove()


def trace_data(cfg: RunConfig, num_classes: int, samples: int) -> FederatedData:
    """One client of ``samples`` all-zero images (no memory per sample: one image, expanded)."""
    size = cfg.model.img_size or 224
    image = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    return FederatedData(
        train_images=image.expand(samples, -1, -1, -1), train_labels=torch.zeros(samples, dtype=torch.long),
        test_images=image, test_labels=torch.zeros(1, dtype=torch.long),
        client_indices=[np.arange(samples, dtype=np.int64)], classes=[str(c) for c in range(num_classes)],
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), img_size=size)


def trace_rounds(cls: type, cfg: RunConfig, model: nn.Module, samples: int) -> dict[bool, RoundTrace]:
    """``{first: trace}`` of one client holding ``samples`` samples: its first round (True) and the next (False).

    Args:
        cls: The :class:`~benchmark.federation.method.Method` subclass (built here on the meta device).
        cfg: The run settings; its weights are replaced by ``scratch`` (no file is read) and its partition by
            one client sampled every round.
        model: A model of the same architecture (its input size and class count are read).
        samples: Samples the client holds.
    """
    size = model.head.patch_embed.img_size
    cfg = cfg.replace(**{"model.weights": "scratch", "model.img_size": size[0], "partition.num_clients": 1,
                         "train.participation": 1.0, "train.rounds": 2})
    key = (cls, cfg.hash(), model.num_classes, samples)
    if key not in _CACHE:
        _CACHE[key] = _trace(cls, cfg, model.num_classes, samples)
    return _CACHE[key]


_CACHE: dict[tuple, dict[bool, RoundTrace]] = {}
"""Traces by (class, config hash, classes, samples): the accounting asks for one several times."""


def _trace(cls: type, cfg: RunConfig, num_classes: int, samples: int) -> dict[bool, RoundTrace]:
    data = trace_data(cfg, num_classes, samples)
    with torch.random.fork_rng(devices=[]), torch.device(META):  # building seeds torch: leave the caller's RNG
        method = cls(cfg, data, META)
    out = {}
    with unfused_attention(method.model), _party_stack(method.model, cls.client_stores) as current:
        for rnd in (0, 1):
            tally = _FlopTally(current)
            with _PartyTags(current), tally:
                method.client_round(rnd, 0)
            comm = method.comm.frame()
            out[rnd == 0] = RoundTrace(_flop_counts(tally.counts), comm[comm["round"] == rnd].reset_index(drop=True))
    return out


def _flop_counts(counts: dict[tuple[str, bool], int]) -> dict[str, FlopCount]:
    """Per party, halved to fvcore's convention (1 FLOP = 1 multiply-add)."""
    parties = sorted({party for party, _ in counts})
    return {p: FlopCount(forward=counts.get((p, False), 0) // 2, backward_activation=counts.get((p, True), 0) // 2)
            for p in parties}


__all__ = ["RoundTrace", "TRACED", "TRACED_FIRST", "trace_rounds", "trace_data"]
