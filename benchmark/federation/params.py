"""The built-in methods' own hyper-parameters (``method_params``), importable without torch.

Each method class names its frozen dataclass as ``Params`` (:class:`~benchmark.federation.method.Method`); the
built-in ones live here rather than beside their method's torch code, so that a workflow's parse (every Snakemake
process: a dry run, the main process, each cluster job step) checks a profile's ``method_params`` without importing
torch (:mod:`benchmark.method_catalog`; ~2.5 s of a ~3.5 s parse on the 2-core machines). The method modules
import them from here: :class:`SplitFedParams` is SplitFed's (:mod:`baselines.splitfed`), :class:`SFPromptParams`
SFPrompt's (:mod:`benchmark.sfprompt`, where the knobs are explained), :class:`NoParams` that of a method without
any. A method from outside the package keeps its ``Params`` where it likes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from benchmark.errors import ConfigError


@dataclass(frozen=True)
class NoParams:
    """The hyper-parameters of a method that has none beyond the shared ``train`` section."""


@dataclass(frozen=True)
class SplitParams:
    """What every split method shares (the base of SplitFed's and SFPrompt's ``Params``): the noise defence.
    A ``method_params`` key, not a RunConfig one, because only a method that sends smashed data has it:
    FedAvg and FedPrompt reject the key instead of silently ignoring it."""

    smashed_noise_sigma: float = 0.0
    """σ of the Gaussian-noise defence (issue #12): i.i.d. N(0, σ²) noise added to every element of the smashed
    data (the head's output, every token row) before it is sent, at every send site (:meth:`~benchmark.federation.method.Method.send_smashed`).
    Absolute, in activation units, exactly as ``privacy.noise_sigma`` is applied in the privacy evaluation
    (:func:`benchmark.privacy.attacks.add_noise`), so a run trained at σ is attacked at the same σ. 0: no
    noise and no random draws (bit-identical to a run without the knob). Bytes sent are unchanged."""

    def __post_init__(self) -> None:
        if not (self.smashed_noise_sigma >= 0 and math.isfinite(self.smashed_noise_sigma)):
            raise ConfigError("config key 'method_params.smashed_noise_sigma' must be a finite number >= 0, "
                              f"got {self.smashed_noise_sigma!r}")


@dataclass(frozen=True)
class SplitFedParams(SplitParams):
    """SplitFed's own hyper-parameters (``method_params`` when ``train.method`` is ``sfl_v1`` or ``sfl_v2``), and the
    noise defence every split method shares (``smashed_noise_sigma``, :class:`SplitParams`)."""

    client_order: str = "random"
    """Order in which a round's clients are served: ``random`` (seeded per round, as the reference code) or
    ``sorted``. Changes nothing for SFL-V1, whose server copies are independent."""
    server_optimizer: str = "per_client"
    """Lifetime of the server's optimiser: ``per_client`` (fresh for each client's round, our default) or
    ``per_batch`` (fresh for every batch, as in the reference code: no server momentum)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, allowed in (("client_order", ("random", "sorted")), ("server_optimizer", ("per_client", "per_batch"))):
            if getattr(self, key) not in allowed:
                raise ConfigError(f"config key 'method_params.{key}' must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, key)!r}")


EL2N_TIMINGS = ("before_local_loss", "after_local_loss", "local_loss_pass")
LOCAL_LOSS_SAMPLES = ("all", "kept")


def _one_of(value: Any, allowed: tuple, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"config key 'method_params.{key}' must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class SFPromptParams(SplitParams):
    """SFPrompt's own hyper-parameters (config section ``method_params`` when ``train.method: sfprompt``), and the
    noise defence every split method shares (``smashed_noise_sigma``, :class:`SplitParams`: split training only;
    the self-update phase sends nothing, so it never sees noise)."""

    keep_ratio: float = 0.5
    """γ: fraction of local samples kept for split training, highest EL2N first (Paul et al. keep the hardest;
    our reading of the paper's pruning ratio)."""
    local_loss_epochs: int = 1
    """Epochs of the local-loss update (head -> tail, body skipped); 0 disables it."""
    local_loss_samples: str = "all"
    """``all`` (the paper's L_C over D_k, default) or ``kept`` (only the samples pruning kept)."""
    el2n_timing: str = "after_local_loss"
    """When EL2N is scored: ``after_local_loss`` (with the locally updated model, in the paper's listed order
    (a) then (b); default), ``before_local_loss`` (with the received model; in round 0 its classifier is
    untrained, so pruning is noise) or ``local_loss_pass`` (from the logits of the local-loss update's last
    epoch, before each step: no extra forward pass)."""
    el2n_every_round: bool = True
    """Re-score every round (default) or only the first time a client is sampled (later rounds reuse its kept
    set: a steady-state round then has no scoring cost)."""
    el2n_warmup_epochs: int = 0
    """Local-loss epochs on all samples before a client's first scoring, so round-0 pruning does not rank
    samples with a freshly initialised classifier (0: score the received model as it is)."""
    split_epochs: int = 1
    """Epochs of split training on the kept samples."""
    prompt_grad_via_server: bool = True
    """Prompts get gradients in split training through the server's frozen body (our choice)."""
    minimal_traffic: bool = False
    """Send only the rows the receiver uses: with no tail block and token (CLS) pooling the tail reads only the
    prefix (CLS) rows of the body output (and their gradient is the only non-zero one); with no head block the
    client needs the gradient at the prompt rows only (everything else upstream is frozen). Results are
    identical; the ledger counts what is sent. Off: whole activations, as a naive implementation sends."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.keep_ratio <= 1:
            raise ConfigError(f"config key 'method_params.keep_ratio' must be in (0, 1], got {self.keep_ratio!r}")
        for key in ("local_loss_epochs", "el2n_warmup_epochs"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key 'method_params.{key}' must be >= 0, got {getattr(self, key)!r}")
        if self.split_epochs < 1:
            raise ConfigError(f"config key 'method_params.split_epochs' must be >= 1, got {self.split_epochs!r}")
        _one_of(self.el2n_timing, EL2N_TIMINGS, "el2n_timing")
        _one_of(self.local_loss_samples, LOCAL_LOSS_SAMPLES, "local_loss_samples")
        if self.el2n_timing != "before_local_loss" and self.local_loss_samples == "kept":
            raise ConfigError(f"config key 'method_params.local_loss_samples': kept needs el2n_timing "
                              f"before_local_loss (with {self.el2n_timing} the kept set does not exist yet)")
        if self.el2n_timing == "local_loss_pass" and self.local_loss_epochs < 1:
            raise ConfigError("config key 'method_params.el2n_timing': local_loss_pass needs local_loss_epochs >= 1")
