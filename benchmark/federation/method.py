"""The ``Method`` base class: what a federated method decides, as hooks; the round loop is apart.

Shape taken from Flower, which keeps the loop in its ``Server`` and the decisions in the ``Strategy``: the round
loop (:mod:`benchmark.federation.rounds`: client sampling, the broadcast of the trainable global state, each
sampled client's local work, FedAvg aggregation, evaluation every ``eval_every`` rounds) calls the hooks of this
class, and a method implements the one it must (:meth:`Method.local_update`, abstract) and overrides the others
where it differs. Every tensor that crosses client <-> server is recorded in the communication ledger where it is
sent, and every sample a party processes in the compute ledger; :meth:`Method.train_epochs` is the one local
training loop (epochs of seeded batches, one step each, the loss summed) that every method's local work runs.

Which parameters each party trains is declared once, by state-dict key prefixes of the
:class:`~benchmark.models.split.SplitViT` (``client_prefixes``, ``server_prefixes``; :meth:`Method.set_trainability`
applies them), so a method is a small class, registered by name in ``METHODS``. Its own hyper-parameters are a
frozen dataclass (``Params``) read from the run config's ``method_params`` section. This module never imports its
subclasses: :mod:`benchmark.methods` is the one import point that fills the registry (as timm's
``models/__init__.py`` does).

Choices shared by every method (ours, the papers are silent): a fresh SGD optimiser per client and round
(optimiser state is not carried across rounds, as in FedAvg's Alg. 1); partial last batches are kept;
frozen weights are assumed installed on the devices once and are not counted as per-round traffic.
"""

from __future__ import annotations

import abc
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from benchmark import seeding
from benchmark.accounting.comm import CommLedger
from benchmark.accounting.compute import ComputeLedger
from benchmark.accounting.flops import FlopCount
from benchmark.config import RunConfig, build_section
from benchmark.data.federated import FederatedData
from benchmark.errors import ConfigError, NumericError
from benchmark.federation import rounds
from benchmark.federation.params import NoParams
from benchmark.federation.rounds import ClientUpdate
from benchmark.federation.trace import TRACED, TRACED_FIRST, trace_rounds
from benchmark.models.split import SplitViT
from benchmark.models.vit import create_backbone
from benchmark.registry import Registry

METHODS: Registry[type["Method"]] = Registry("method")
"""Every federated method, by lowercase name (``sfprompt``, ``fedavg``, ``fedprompt``, ``sfl_v1``, ...)."""


def register_method(name: str) -> Callable[[type["Method"]], type["Method"]]:
    """Class decorator: register a :class:`Method` subclass under ``name`` and set its ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        if not cls.__dict__.get("label"):
            cls.label = name
        return METHODS.register(name)(cls)

    return deco


METRIC_COLUMNS = ["round", "client", "split", "metric", "value"]
ANALYTIC_HOOKS = ("per_sample_costs", "expected_samples", "expected_transfers")


@dataclass(frozen=True)
class Transfer:
    """One expected exchange, for analytic accounting: ``messages`` tensors totalling ``numel`` elements."""

    phase: str
    direction: str
    kind: str
    dtype: torch.dtype
    numel: int
    messages: int


def build_split_model(cfg: RunConfig, num_classes: int, prompt_len: int) -> SplitViT:
    """The configured backbone, initialised from the run's seed, cut as configured."""
    torch.manual_seed(seeding.seed_for(cfg.seed, "init"))
    vit = create_backbone(cfg.model, num_classes)
    return SplitViT(vit, cfg.model.head_blocks, cfg.model.tail_blocks, prompt_len, cfg.model.prompt_depth)


def image_input(model: SplitViT) -> tuple[torch.Tensor]:
    """A one-sample image for per-sample FLOP counting (fvcore counts are linear in the batch size)."""
    size = model.head.patch_embed.img_size
    dev = next(model.parameters()).device
    return (torch.zeros(1, 3, *size, device=dev),)


def token_input(model: SplitViT) -> tuple[torch.Tensor]:
    """A one-sample token sequence as it crosses the cut (patches + prefix + prompts, width D)."""
    dev = next(model.parameters()).device
    return (torch.zeros(1, model.num_tokens, model.embed_dim, device=dev),)


def gaussian_noise(tensor: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``tensor`` plus i.i.d. N(0, σ²) noise (σ absolute), drawn on the CPU so the draws are the same on any device;
    ``sigma = 0`` returns ``tensor`` itself and draws nothing. The one definition of the defence: training
    (:meth:`Method.send_smashed`) and the privacy evaluation (:func:`benchmark.privacy.attacks.add_noise`) use it."""
    if sigma <= 0:
        return tensor
    noise = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
    return tensor + sigma * noise.to(tensor.device)


BatchStep = Callable[..., torch.Tensor]
"""One batch of :meth:`Method.train_epochs`: ``step(epoch, x, y)`` (``step(epoch, x, y, index)`` with
``with_index``) runs the forward, backward and optimiser step and returns the batch's mean loss."""


class Method(abc.ABC):
    """Base of every federated method. Subclasses set the class attributes and implement the hooks
    (:meth:`local_update` at least); the round loop (:mod:`benchmark.federation.rounds`) calls them.

    Attributes:
        name: Registry name (set by ``@register_method``).
        label: How tables and figures name the method (the paper's spelling).
        order: Position in tables and figures (lower first); references after the federated methods.
        client_prefixes: State-dict prefixes trained on the client, broadcast, uploaded and averaged.
        server_prefixes: State-dict prefixes trained on the server.
        client_stores: State-dict prefixes the client must hold (frozen parts included); None: the whole
            model (the method runs the full forward pass on the client).
        server_copies: ``per_client`` (a copy per client, averaged each round: SFL-V1) or ``shared``
            (one copy trained by the clients in turn: SFL-V2). Ignored without server prefixes.
        uses_prompts: Whether the model gets ``model.prompt_len`` prompt tokens.
        Params: The frozen dataclass of the method's own hyper-parameters (``method_params``).
        reference: A reference configuration (centralized training, linear probe), not a federated method
            of the paper: reported beside the methods, never compared in the claims.
    """

    name: str = ""
    label: str = ""
    order: int = 100
    client_prefixes: tuple[str, ...] = ()
    server_prefixes: tuple[str, ...] = ()
    client_stores: tuple[str, ...] | None = None
    server_copies: str = "per_client"
    uses_prompts: bool = False
    Params: type = NoParams
    reference: bool = False
    separate_fed_server: bool = False
    """Whether the client parts are averaged by a fed server apart from the main server that receives the smashed
    data (SplitFed, Thapa et al. 2022): the main server alone then never sees the trained client part (the
    privacy job's ``server = main`` rows)."""
    critical_path: str = "parallel_clients"
    """How a round's time composes (:data:`benchmark.system.model.CRITICAL_PATHS`): ``parallel_clients`` (the
    server waits for the slowest client; per-client server work runs in parallel) or ``serial_server`` (one
    shared server part serves the clients in turn)."""

    def __init__(self, cfg: RunConfig, data: FederatedData, device: torch.device | str = "cpu") -> None:
        self.cfg, self.t, self.data = cfg, cfg.train, data
        self.p = self.params(cfg)
        self.device = torch.device(device)
        self.model = self.prepare_model(cfg, data.num_classes).to(self.device)
        self._params = dict(self.model.named_parameters())
        self.global_client = self._snapshot(self.client_keys())
        self.global_server = self._snapshot(self.server_keys())
        self.comm = CommLedger()
        self.compute = ComputeLedger()
        self.metrics: list[tuple[int, int, str, str, float]] = []
        self.next_round = 0
        self._noise_stream: tuple = (None, None, None)  # (round, client, generator) of send_smashed's noise
        # on the meta device the method is itself being traced: its costs are what the tracer counts
        self.costs = {} if self.device.type == "meta" else self.per_sample_costs(self.model, cfg)
        self._traced: dict[tuple[int, bool], dict[str, FlopCount]] = {}  # (samples, first) -> party -> FLOPs
        self.warnings: list[str] = list(self.check_settings())
        for w in self.warnings:
            warnings.warn(w, stacklevel=2)

    # ------------------------------------------------------------------ model and parameter groups
    @classmethod
    def build_model(cls, cfg: RunConfig, num_classes: int) -> SplitViT:
        return build_split_model(cfg, num_classes, cfg.model.prompt_len if cls.uses_prompts else 0)

    @classmethod
    def prepare_model(cls, cfg: RunConfig, num_classes: int) -> SplitViT:
        """The method's model with exactly its trainable parameters requiring gradients."""
        return cls.set_trainability(cls.build_model(cfg, num_classes))

    @classmethod
    def set_trainability(cls, model: SplitViT) -> SplitViT:
        """The one place trainability is set: ``requires_grad`` iff a client or server prefix matches."""
        for name, p in model.named_parameters():
            p.requires_grad_(cls.is_client_param(name) or cls.is_server_param(name))
        return model

    @classmethod
    def params(cls, cfg: RunConfig) -> Any:
        """The method's ``Params`` from ``cfg.method_params`` (unknown keys: one line listing the valid)."""
        return build_section(cls.Params, cfg.method_params, "method_params.")

    @classmethod
    def resolved_params(cls, cfg: RunConfig) -> dict[str, Any]:
        """Every hyper-parameter of the method, defaults filled in (what ``config.resolved.yaml`` states)."""
        return asdict(cls.params(cfg))

    @classmethod
    def readings(cls) -> dict[str, dict[str, Any]]:
        """Named ``method_params`` overrides, one per defensible reading of what the paper leaves open (the
        claims table gives the range of a claim over them). Default: the method has one reading."""
        return {}

    @classmethod
    def client_stored(cls, model: SplitViT) -> int:
        """Parameters the client must hold (frozen ones included)."""
        return sum(p.numel() for k, p in model.named_parameters()
                   if cls.client_stores is None or k.startswith(cls.client_stores))

    @classmethod
    def is_client_param(cls, key: str) -> bool:
        return key.startswith(cls.client_prefixes)

    @classmethod
    def is_server_param(cls, key: str) -> bool:
        return bool(cls.server_prefixes) and key.startswith(cls.server_prefixes)

    def client_keys(self) -> list[str]:
        return [k for k in self._params if self.is_client_param(k)]

    def server_keys(self) -> list[str]:
        return [k for k in self._params if self.is_server_param(k)]

    def _snapshot(self, keys: Iterable[str]) -> dict[str, torch.Tensor]:
        return {k: self._params[k].detach().clone() for k in keys}

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, v in state.items():
                self._params[k].copy_(v)

    def trainable(self, keys: Iterable[str]) -> list[nn.Parameter]:
        return [self._params[k] for k in keys]

    # ------------------------------------------------------------------ hooks: the round
    @abc.abstractmethod
    def local_update(self, rnd: int, client: int) -> ClientUpdate:
        """The client's local work for round ``rnd`` (global state already loaded into ``self.model``, which is
        in training mode): train, record what crosses the network and what each party computes, and say how
        many samples the update stands for (its FedAvg weight) and its training loss."""

    def sample_clients(self, rnd: int) -> list[int]:
        """``max(1, round(participation × K))`` clients without replacement, seeded by (seed, round)."""
        k = self.data.num_clients
        m = max(1, int(round(self.t.participation * k)))
        if m >= k:
            return list(range(k))
        return sorted(seeding.rng(self.cfg.seed, "sampling", rnd).choice(k, size=m, replace=False).tolist())

    def client_order(self, rnd: int, clients: list[int]) -> list[int]:
        """The order in which the sampled clients are served (sorted; a method whose result depends on the
        order, such as SFL-V2, overrides it)."""
        return clients

    def extra_state(self) -> dict[str, Any]:
        """Method-specific state that persists across rounds (override with :meth:`load_extra_state`)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def check_settings(self) -> Iterable[str]:
        """Warnings about degenerate settings (shown in the run and recorded in ``env.json``)."""
        return ()

    # ------------------------------------------------------------------ hooks: costs (analytic, or traced)
    @classmethod
    def traced_costs(cls) -> bool:
        """Whether the method's costs come from tracing its rounds (it implements none of the three analytic
        hooks ``per_sample_costs``, ``expected_samples``, ``expected_transfers``) rather than from them."""
        own = [h for h in ANALYTIC_HOOKS if getattr(cls, h).__func__ is not getattr(Method, h).__func__]
        if own and len(own) < len(ANALYTIC_HOOKS):
            missing = [h for h in ANALYTIC_HOOKS if h not in own]
            raise ConfigError(f"method {cls.name or cls.__qualname__!r} implements {', '.join(own)} but not "
                              f"{', '.join(missing)}: implement all three analytic hooks or none (then its costs "
                              f"are traced)")
        return not own

    @classmethod
    def per_sample_costs(cls, model: SplitViT, cfg: RunConfig) -> dict[str, tuple[str, FlopCount]]:
        """Per-sample FLOPs of each (phase, party) the method executes: ``{"phase/party": (party, cost)}``.
        ``model`` has the method's trainability already set (``requires_grad``). Default (a traced method):
        none; :meth:`client_round` charges each traced client round whole."""
        return {}

    @classmethod
    def expected_transfers(cls, model: SplitViT, cfg: RunConfig, samples: int) -> list[Transfer]:
        """Analytic per-round exchanges of one client holding ``samples`` samples (no training). Default (a
        traced method): the ledger of a traced steady round."""
        rows = trace_rounds(cls, cfg, model, samples)[False].comm
        return [Transfer(r.phase, r.direction, r.kind, getattr(torch, r.dtype), int(r.numel), int(r.messages))
                for r in rows.itertuples(index=False)]

    @classmethod
    def expected_samples(cls, cfg: RunConfig, samples: int, first: bool = False) -> dict[str, int]:
        """Samples each cost phase processes per round for a client holding ``samples`` samples; ``first``: in
        the client's first sampled round (where one-off work such as a first EL2N scoring happens). Default (a
        traced method): the one traced phase of that round."""
        return {TRACED_FIRST if first else TRACED: samples}

    @classmethod
    def round_costs(cls, model: SplitViT, cfg: RunConfig, samples: int,
                    first: bool = False) -> dict[str, tuple[str, FlopCount]]:
        """FLOPs of one client's round per ``"phase/party"`` (whole-round totals, not per sample): the analytic
        hooks' per-sample costs times their samples, or the traced round (:mod:`benchmark.federation.trace`)."""
        if cls.traced_costs():
            phase = TRACED_FIRST if first else TRACED
            return {f"{phase}/{party}": (party, cost)
                    for party, cost in trace_rounds(cls, cfg, model, samples)[first].flops.items()}
        counts = cls.expected_samples(cfg, samples, first)
        return {key: (party, cost.scaled(counts.get(key.split("/")[0], 0)))
                for key, (party, cost) in cls.per_sample_costs(model, cfg).items()}

    # ------------------------------------------------------------------ helpers for hooks

    def optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """A fresh optimiser for one client's round (``train.optimizer``)."""
        if self.t.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.t.lr, weight_decay=self.t.weight_decay)
        return torch.optim.SGD(params, lr=self.t.lr, momentum=self.t.momentum, weight_decay=self.t.weight_decay)

    def step(self, opt: torch.optim.Optimizer) -> None:
        if self.t.grad_clip is not None:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.t.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    def generator(self, *names: str | int) -> torch.Generator:
        return seeding.torch_generator(self.cfg.seed, *names)

    def batches(self, indices: np.ndarray, rnd: int, client: int, epoch: int, stream: str = "train",
                with_index: bool = False):
        """Seeded, shuffled batches of a client's samples: the order depends only on (seed, round, client,
        epoch, stream), so every method's main training loop sees the same order for the same samples
        (what the equivalence tests rely on) and a resumed run replays it exactly."""
        gen = self.generator("batches", stream, rnd, client, epoch)
        return self.data.batches(indices, self.t.batch_size, self.device, gen, with_index=with_index)

    def train_epochs(self, rnd: int, client: int, samples: np.ndarray, epochs: int, phase: str,
                     batch_step: BatchStep, stream: str = "train", with_index: bool = False) -> float:
        """The one local training loop: ``epochs`` passes over the seeded batches of ``samples``
        (:meth:`batches` of ``stream``), ``batch_step(epoch, x, y)`` on each (it steps and returns the batch's
        mean loss). Charges ``phase`` one sample per sample seen and returns the mean training loss over them
        (a :class:`NumericError` when it is not finite).

        The loss is summed as ``loss × batch size`` on the device (no host sync per batch) and divided once at
        the end: the mean over samples, not over batches, so a partial last batch weighs what it holds."""
        loss_sum, n = torch.zeros((), device=self.device), 0
        for epoch in range(epochs):
            for batch in self.batches(samples, rnd, client, epoch, stream=stream, with_index=with_index):
                loss = batch_step(epoch, *batch)
                loss_sum += loss.detach() * len(batch[1])
                n += len(batch[1])
        self.record_compute(rnd, client, phase, n)
        return self.check_loss(loss_sum, rnd, client) / max(n, 1)

    def send_smashed(self, rnd: int, client: int, phase: str, smashed: torch.Tensor) -> torch.Tensor:
        """The one send site of smashed data (client -> server): add the noise defence
        (``method_params.smashed_noise_sigma``, :class:`~benchmark.federation.params.SplitParams`), record the
        message in the ledger and return exactly what the server receives (detached; the caller sets
        ``requires_grad``). The noise is additive, so the gradient the server returns at the cut is also the
        gradient w.r.t. the head's output.

        The draws come from one generator per (seed, round, client), consumed in batch order: a run is
        bit-reproducible, and a run resumed at a round boundary draws what an uninterrupted one does."""
        sigma = float(getattr(self.p, "smashed_noise_sigma", 0.0))
        received = smashed.detach()
        if sigma > 0:
            if self._noise_stream[:2] != (rnd, client):
                self._noise_stream = (rnd, client, self.generator("smashed_noise", rnd, client))
            received = gaussian_noise(received, sigma, self._noise_stream[2])
        self.comm.record(rnd, client, phase, "up", "smashed", received)
        return received

    def record_compute(self, rnd: int, client: int, phase: str, samples: int) -> None:
        """Charge ``samples`` samples of every cost registered under ``phase``."""
        for key, (party, cost) in self.costs.items():
            if key.split("/")[0] == phase:
                self.compute.record(rnd, client, phase, party, cost, samples)

    def check_loss(self, loss_sum: torch.Tensor, rnd: int, client: int) -> float:
        value = float(loss_sum)
        if not math.isfinite(value):
            raise NumericError(
                f"{self.name}: non-finite training loss ({value}) in round {rnd}, client {client}; "
                "lower train.lr or set train.grad_clip"
            )
        return value

    # ------------------------------------------------------------------ the round loop (benchmark.federation.rounds)
    def run(self, on_round: Callable[[int], None] | None = None) -> None:
        """Run the remaining rounds (all of them unless restored from a checkpoint); ``on_round(rnd)`` after each."""
        rounds.run(self, on_round)

    def run_round(self, rnd: int) -> None:
        """Round ``rnd``: sampling, each client's round, aggregation, evaluation when due."""
        rounds.run_round(self, rnd)

    def client_round(self, rnd: int, c: int) -> tuple[ClientUpdate, dict[str, torch.Tensor]]:
        """Client ``c``'s part of round ``rnd``: broadcast, local work, upload (what a cost trace runs)."""
        return rounds.client_round(self, rnd, c)

    def accuracy(self, indices: np.ndarray | None, split: str) -> tuple[float, float]:
        """(top-1 accuracy, mean cross-entropy) of the current model on ``indices`` of ``split``."""
        return rounds.accuracy(self, indices, split)

    def evaluate(self, rnd: int, per_client: bool = False, final: bool = True) -> None:
        """Score the global model after round ``rnd`` (:func:`benchmark.federation.rounds.evaluate`). The loop
        calls it through the method, so a profiler can time it (:class:`benchmark.perf.PhaseClock`)."""
        rounds.evaluate(self, rnd, per_client=per_client, final=final)

    # ------------------------------------------------------------------ outputs
    def metrics_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.metrics, columns=METRIC_COLUMNS)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume after the last completed round (the RNG streams are derived from
        (seed, round, client), so no generator state needs saving)."""
        return {
            "next_round": self.next_round,
            "global_client": self.global_client,
            "global_server": self.global_server,
            "comm": self.comm.state_dict(),
            "compute": self.compute.state_dict(),
            "metrics": list(self.metrics),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_round = int(state["next_round"])
        self.global_client = {k: v.to(self.device) for k, v in state["global_client"].items()}
        self.global_server = {k: v.to(self.device) for k, v in state["global_server"].items()}
        self.comm.load_state_dict(state["comm"])
        self.compute.load_state_dict(state["compute"])
        self.metrics = [tuple(m) for m in state["metrics"]]
        self.load_extra_state(state.get("extra", {}))
