"""The federated round loop, apart from what a method decides: Flower keeps the loop in its ``Server`` and the
decisions in the ``Strategy``; here the loop is these functions and the decisions are the hooks of
:class:`~benchmark.federation.method.Method`, so a method's file reads as what differs.

One round (FedAvg's, McMahan et al. 2017, Alg. 1, which every method of the suite shares):

1. **Sample** ``max(1, round(participation × K))`` clients (:meth:`Method.sample_clients`) and serve them in the
   method's order (:meth:`Method.client_order`).
2. For each client (:func:`client_round`): **broadcast** the global trainable client state (and, with a server
   copy per client, reset the server part to the round's global one), the method's **local work**
   (:meth:`Method.local_update`), **upload** the client's trained state. Both transfers go in the
   communication ledger where they are sent.
3. **Aggregate**: FedAvg over the uploaded client states (weighted per ``train.weighting``), and over the server
   copies (``server_copies: per_client``) or the one shared server part as it was left (``shared``).
4. **Evaluate** every ``eval_every`` rounds and at the last (:func:`evaluate`).

The functions take the method and keep every piece of state on it (global states, ledgers, metrics,
``next_round``), so a checkpoint is the method's ``state_dict`` and a resumed run replays what an uninterrupted
one does. :class:`Method` offers them as ``run``, ``run_round``, ``client_round`` and ``accuracy``.
This module never imports the method base (it only calls its hooks), so the base can import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data.sampling import stratified_subsample
from benchmark.federation.aggregation import WeightedAverage
from benchmark.federation.trace import TRACED, TRACED_FIRST, trace_rounds

Method = Any
"""A :class:`benchmark.federation.method.Method`: the base class imports this module, so this module does not import
it back (not even for annotations: the import test counts those as edges too)."""


@dataclass
class ClientUpdate:
    """What a client's local work returns to the loop."""

    samples: int
    """Samples the client trained on (the FedAvg weight under ``weighting: samples``)."""
    loss: float
    """Mean training loss over the client's last phase."""
    extra: dict[str, float] = field(default_factory=dict)
    """Method-specific per-client metrics (e.g. SFPrompt's kept samples)."""


def state_kind(key: str) -> str:
    """Ledger kind of a state-dict entry: ``prompts`` for prompt tokens, ``params`` otherwise."""
    return "prompts" if ".prompts." in f".{key}" else "params"


def send_state(method: Method, rnd: int, client: int, phase: str, direction: str,
               state: dict[str, torch.Tensor]) -> None:
    """Record a state transfer (broadcast or upload): one message per ledger kind present."""
    for kind in ("params", "prompts"):
        tensors = [v for k, v in state.items() if state_kind(k) == kind]
        if tensors:
            method.comm.record(rnd, client, phase, direction, kind, tensors)


def record_traced(method: Method, rnd: int, client: int) -> None:
    """Charge a traced method's client round: the trace of a client holding as many samples (cached)."""
    first = all(client not in method.sample_clients(r) for r in range(rnd))
    samples = len(method.data.client_indices[client])
    if (samples, first) not in method._traced:
        for f, trace in trace_rounds(type(method), method.cfg, method.model, samples).items():
            method._traced[(samples, f)] = trace.flops
    for party, cost in method._traced[(samples, first)].items():
        method.compute.record(rnd, client, TRACED_FIRST if first else TRACED, party, cost, 1)


def client_round(method: Method, rnd: int, c: int) -> tuple[ClientUpdate, dict[str, torch.Tensor]]:
    """Client ``c``'s part of round ``rnd``: broadcast, local work, upload (what a cost trace runs)."""
    # Broadcast: the global trainable client state goes down to client c.
    method._load(method.global_client)
    send_state(method, rnd, c, "broadcast", "down", method.global_client)
    if method.server_keys() and method.server_copies == "per_client":
        method._load(method.global_server)
    method.model.train()
    upd = method.local_update(rnd, c)
    if method.device.type != "meta" and method.traced_costs():
        record_traced(method, rnd, c)
    # Upload: the client's trained state goes up for aggregation.
    state = {k: method._params[k].detach() for k in method.global_client}
    send_state(method, rnd, c, "upload", "up", state)
    return upd, state


def run_round(method: Method, rnd: int) -> None:
    """One whole round: sampling, every client's round, aggregation, evaluation when due."""
    t = method.t
    clients = method.client_order(rnd, method.sample_clients(rnd))
    client_avg, server_avg = WeightedAverage(), WeightedAverage()
    method._load(method.global_server)
    for c in clients:
        upd, state = client_round(method, rnd, c)
        weight = float(upd.samples) if t.weighting == "samples" else 1.0
        if weight > 0:
            client_avg.add(state, weight)
            if method.server_keys() and method.server_copies == "per_client":
                server_avg.add({k: method._params[k] for k in method.global_server}, weight)
        method.metrics.append((rnd, c, "train", "loss", upd.loss))
        method.metrics.append((rnd, c, "train", "samples", float(upd.samples)))
        for name, value in upd.extra.items():
            method.metrics.append((rnd, c, "train", name, float(value)))
    # Aggregation: FedAvg of the client parts; the server part per its copies.
    if client_avg.count:
        method.global_client = client_avg.result()
    if method.server_keys():
        if method.server_copies == "per_client" and server_avg.count:
            method.global_server = server_avg.result()
        elif method.server_copies == "shared":
            method.global_server = method._snapshot(method.server_keys())
    last = rnd == t.rounds - 1
    if last or (rnd + 1) % t.eval_every == 0:
        method.evaluate(rnd, per_client=last and t.client_eval, final=last)  # through the method: profilers patch it
    method.next_round = rnd + 1


def run(method: Method, on_round: Callable[[int], None] | None = None) -> None:
    """Run the remaining rounds (all of them unless restored from a checkpoint)."""
    for rnd in range(method.next_round, method.t.rounds):
        run_round(method, rnd)
        if on_round is not None:
            on_round(rnd)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def accuracy(method: Method, indices: np.ndarray | None, split: str) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of the method's current model on ``indices`` of ``split``."""
    data, model = method.data, method.model
    model.eval()
    if indices is None:
        indices = np.arange(len(data.test_labels if split == "test" else data.train_labels))
    correct, loss, n = 0, 0.0, 0
    for x, y in data.batches(indices, method.t.eval_batch_size, method.device, None, split=split):
        logits = model(x)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(-1) == y).sum())
        n += len(y)
    return correct / max(n, 1), loss / max(n, 1)


def evaluate(method: Method, rnd: int, per_client: bool = False, final: bool = True) -> None:
    """The global model (aggregated client state + server state) on the evaluation set (the test split,
    or the validation hold-out: rows labelled ``data.eval_split``); with ``per_client``, also each client's
    accuracy on its own training data. A round that is not ``final`` uses ``train.interim_eval_samples``
    images of it when set (a fixed stratified subsample); the ``samples`` row says how many were scored."""
    data = method.data
    method._load(method.global_client)
    method._load(method.global_server)
    indices = None
    n_eval = method.t.interim_eval_samples
    if not final and n_eval is not None and n_eval < len(data.test_labels):
        indices = stratified_subsample(data.test_labels.cpu().numpy(), n_eval, seed=0)
    acc, loss = accuracy(method, indices, "test")
    n = len(data.test_labels) if indices is None else len(indices)
    method.metrics.append((rnd, -1, data.eval_split, "accuracy", acc))
    method.metrics.append((rnd, -1, data.eval_split, "loss", loss))
    method.metrics.append((rnd, -1, data.eval_split, "samples", float(n)))
    if per_client:
        for c, idx in enumerate(data.client_indices):
            acc_c, _ = accuracy(method, idx, "train")
            method.metrics.append((rnd, c, "client_train", "accuracy", acc_c))
