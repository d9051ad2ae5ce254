"""Reconstruction attacks on smashed data: one registry, each attack a function
``(view, knowledge) -> images`` (what the server received, what it knows -> reconstructed pixels).

Every attack returns float images ``[B, 3, H, W]`` in **[0, 1] pixel units** at the model's input resolution
(the backbone's mean/std normalisation undone), the space in which :mod:`benchmark.privacy.metrics` scores
them. The threat model is in :mod:`benchmark.privacy` (the server knows the head's weights and the prompts).

Registered attacks (``ATTACKS.names()``):

* ``analytic``: least-squares inversion of the linear client map at ``head_blocks = 0`` (patch embedding +
  position embedding; prefix and prompt tokens dropped). For ViT-B/16 the per-patch map is square
  (768 outputs for 16×16×3 = 768 pixels), so the solve is exact up to float rounding; with fewer outputs
  than pixels per patch (the smoke profile's 32-wide ViT, 48 pixels per patch) it is the minimum-norm
  solution in normalised pixel space: it sets the directions the map drops to zero. Not applicable (and says
  so) at ``head_blocks >= 1``.
* ``lmmse``: the same linear map inverted with the server's prior (issue #23): the linear MMSE (Wiener)
  estimate under a Gaussian patch prior fitted to the auxiliary images (pooled over positions,
  :mod:`benchmark.privacy.prior`), noise-aware with the defence's σ. It recovers the dropped directions from
  the kept ones (natural-image patches have little variance outside a few dozen directions), so it is the
  attack to report where ``analytic`` is minimum-norm. Not applicable at ``head_blocks >= 1`` either.
* ``optimisation``: white-box model inversion, the rMLE attack of He et al. 2019 ("Model inversion attacks
  against collaborative inference", ACSAC) as UnSplit (Erdogan et al. 2022, "UnSplit: Data-oblivious model
  inversion, model stealing, and label inference attacks against split learning", WPES) runs it: optimise
  the input so that the known head reproduces the observed activations, with a total-variation prior.
  Departure from UnSplit: the head's weights are known (frozen public checkpoint or aggregated by the
  server), so only the input is optimised, not the model; the input is parameterised through a sigmoid so it
  stays in [0, 1], and starts from the auxiliary data's mean image. Issue #23: the server's prior joins the
  loss, the Gaussian patch prior ``lmmse`` uses (``opt_prior``, :func:`prior_penalty`); on the default profile
  at split 1/1 it lifts the attack from 20.7 to 28.1 dB (400 steps), above the decoder.
* ``decoder``: a learned inverse network (He et al. 2019's black-box attack; FORA, Xu et al. 2024, "A
  stealthy wolf in sheep's clothing: feature-oriented reconstruction attack against split learning", CVPR;
  the decoder ResSFL, Li et al. 2022, CVPR, uses to measure leakage per cut layer): the server runs the known
  head on public auxiliary images no client holds, trains a decoder from their smashed data back to pixels,
  then applies it to the clients' smashed data. Departure from FORA: no substitute head is learned, because
  this server knows the head. Decoder: a per-patch-token MLP (D -> hidden -> 3·p²), folded into an image and
  refined by a small residual convolution.
* ``mean_image``: the trivial baseline, the auxiliary data's mean image whatever was received (an attack
  must beat it to have learned anything from the smashed data).

With the Gaussian-noise defence (``sigma > 0``) the server knows σ: the analytic and optimisation attacks
are maximum-likelihood under Gaussian noise as they stand, ``lmmse`` weighs the noise against the prior
(the σ² I term), and the decoder is trained on noised auxiliary smashed data of the same σ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import BenchmarkError
from benchmark.federation.method import gaussian_noise
from benchmark.models.split import SplitViT
from benchmark.privacy.prior import JITTER, PatchPrior, from_patches, to_patches
from benchmark.registry import Registry


class AttackNotApplicable(BenchmarkError):
    """The attack's assumptions do not hold for this client map (e.g. ``analytic`` at ``head_blocks >= 1``)."""


@dataclass(frozen=True)
class AttackSettings:
    """Budgets of the iterative attacks (every default is what ``config/default.yaml`` measures with).

    Attributes:
        opt_steps: Adam steps of the optimisation attack.
        opt_lr: Its learning rate (on the sigmoid's logits).
        opt_tv: Weight of the total-variation prior (mean absolute neighbour difference, [0, 1] pixels)
            against the mean squared activation error.
        opt_prior: Weight of the server's Gaussian patch prior (:func:`patch_prior`, the one ``lmmse`` uses):
            its negative log-likelihood per patch and pixel, ``(x_p - μ)ᵀ Σ⁻¹ (x_p - μ) / (2P)`` in
            normalised units, averaged over patches. 0: no prior term (the attack as UnSplit runs it). 0.01
            was picked on the default profile's privacy cell at split 1/1: 0.01 and 0.03 gave 28.1 and 27.3 dB
            at 400 steps (20.7 without the prior), 0.1 and 1 gave 17.0 and 13.0 dB at 100 steps (17.05
            without); a choice on the attacked images themselves, so slightly optimistic.
        decoder_epochs: Training epochs of the decoder on the auxiliary smashed data.
        decoder_hidden: Hidden width of the decoder's per-token MLP.
        decoder_lr: Adam learning rate of the decoder.
        batch_size: Batch size of decoder training.
        seed: Seeds the decoder's initialisation, its batch order and the defence's noise.
    """

    opt_steps: int = 200
    opt_lr: float = 0.1
    opt_tv: float = 0.01
    opt_prior: float = 0.0
    decoder_epochs: int = 30
    decoder_hidden: int = 256
    decoder_lr: float = 0.002
    batch_size: int = 64
    seed: int = 0


@dataclass
class ServerKnowledge:
    """What the honest-but-curious server knows besides the smashed data.

    Attributes:
        model: The split ViT with the head (and prompts) in the state the client used; only ``model.head`` is
            run. In eval mode.
        mean, std: The backbone's input normalisation (0..1 units per channel).
        aux_images: Public auxiliary images no client holds, float ``[A, 3, H, W]`` in [0, 1] at the model's
            resolution (the decoder's training data, the LMMSE prior and the mean-image baseline).
        sigma: Standard deviation of the Gaussian noise the client adds to the smashed data (0: none).
        settings: Attack budgets.
    """

    model: SplitViT
    mean: tuple[float, ...]
    std: tuple[float, ...]
    aux_images: torch.Tensor
    sigma: float = 0.0
    settings: AttackSettings = field(default_factory=AttackSettings)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, dtype=x01.dtype, device=x01.device).view(1, -1, 1, 1)
        return (x01 - m) / s

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return x * s + m

    def head(self, x01: torch.Tensor) -> torch.Tensor:
        """The client map the server knows: [0, 1] pixels -> smashed tokens ``[B, T, D]``."""
        return self.model.head(self.normalize(x01))


Attack = Callable[[torch.Tensor, ServerKnowledge], torch.Tensor]
ATTACKS: Registry[Attack] = Registry("attack")
"""Every reconstruction attack by name: ``analytic``, ``decoder``, ``lmmse``, ``mean_image``, ``optimisation``."""


def add_noise(smashed: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The defence: i.i.d. Gaussian noise of standard deviation ``sigma`` (activation units) added to the
    smashed data before it is sent. ``sigma = 0`` returns the input unchanged. The same function as the training
    knob ``method_params.smashed_noise_sigma`` (:func:`benchmark.federation.method.gaussian_noise`)."""
    return gaussian_noise(smashed, sigma, generator)


def _grid(model: SplitViT) -> tuple[int, int, int]:
    """(patch side p, patch rows, patch columns) of the head's patch embedding."""
    pe = model.head.patch_embed
    p = pe.proj.kernel_size[0]
    gh, gw = pe.grid_size
    return int(p), int(gh), int(gw)


def patch_tokens(smashed: torch.Tensor, model: SplitViT) -> torch.Tensor:
    """The patch tokens of the smashed data (prefix and head prompt tokens dropped): ``[B, N_patches, D]``."""
    n = model.head.patch_embed.num_patches
    return smashed[:, -n:]


# ----------------------------------------------------------------------------------------------------------
# the linear client map (head_blocks = 0): analytic and lmmse


def _check_linear(model: SplitViT, attack: str) -> None:
    head = model.head
    pe = head.patch_embed
    if model.head_blocks != 0:
        raise AttackNotApplicable(f"{attack}: the client map has {model.head_blocks} transformer block(s) "
                                  "(non-linear); it inverts head_blocks = 0 only")
    proj = getattr(pe, "proj", None)
    if not isinstance(proj, nn.Conv2d) or proj.kernel_size != proj.stride or proj.padding not in ((0, 0), 0):
        raise AttackNotApplicable(f"{attack}: the patch embedding is not a non-overlapping convolution")
    for name, mod in (("patch_embed.norm", getattr(pe, "norm", None)), ("norm_pre", head.norm_pre)):
        if mod is not None and not isinstance(mod, nn.Identity):
            raise AttackNotApplicable(f"{attack}: {name} is a {type(mod).__name__}, so the map is not linear")


def _linear_system(smashed: torch.Tensor, know: ServerKnowledge, attack: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear client map at ``head_blocks = 0`` as ``y = W · patch`` per patch: (``W`` ``[D, C·p·p]``, order
    (c, i, j); ``y`` ``[B·N, D]``: the received patch tokens minus the projection's bias and the position
    embedding), float64 on the CPU (the systems are small). Patches in normalised pixel units."""
    model = know.model
    _check_linear(model, attack)
    proj = model.head.patch_embed.proj
    n = model.head.patch_embed.num_patches
    z = patch_tokens(smashed, model).detach().cpu().double()       # [B, N, D]
    pos = model.head.pos_embed.detach().cpu().double()[0, -n:]     # [N, D]: the patch positions' embedding
    bias = proj.bias.detach().cpu().double() if proj.bias is not None else torch.zeros(proj.out_channels, dtype=torch.float64)
    w = proj.weight.detach().cpu().double().reshape(proj.out_channels, -1)   # [D, C·p·p]
    return w, (z - pos - bias).reshape(-1, w.shape[0])


def _to_image(patches: torch.Tensor, smashed: torch.Tensor, know: ServerKnowledge) -> torch.Tensor:
    """Normalised patch estimates ``[B·N, C·p·p]`` -> [0, 1] images ``[B, C, H, W]`` (normalisation undone,
    clipped: the true pixels lie in [0, 1], so clipping never moves a pixel away from them)."""
    p, gh, gw = _grid(know.model)
    x = from_patches(patches.reshape(smashed.shape[0], gh * gw, -1), p, (gh * p, gw * p))
    return know.unnormalize(x).clamp(0, 1).float().to(smashed.device)


@ATTACKS.register("analytic")
def analytic(smashed: torch.Tensor, know: ServerKnowledge) -> torch.Tensor:
    """Least-squares inversion of ``z = W · patch + b + pos`` per patch (float64 solve, minimum norm when W
    has fewer rows than pixels per patch), then the normalisation undone and clipped to [0, 1]."""
    w, y = _linear_system(smashed, know, "analytic")
    # LAPACK's gelsd handles rank-deficient and wide systems
    return _to_image(torch.linalg.lstsq(w, y.T, driver="gelsd").solution.T, smashed, know)


def patch_prior(know: ServerKnowledge) -> PatchPrior:
    """The server's Gaussian prior of normalised image patches: mean and covariance of the auxiliary images'
    patches at the head's patch size, pooled over positions (:class:`~benchmark.privacy.prior.PatchPrior`)."""
    p, _, _ = _grid(know.model)
    return PatchPrior.fit(to_patches(know.normalize(know.aux_images.detach().cpu().double()), p))


@ATTACKS.register("lmmse")
def lmmse(smashed: torch.Tensor, know: ServerKnowledge) -> torch.Tensor:
    """Linear MMSE (Wiener) inversion of the linear client map under the auxiliary patch prior, noise-aware:
    ``patch = μ + Σ Wᵀ (W Σ Wᵀ + σ² I)⁻¹ (y - W μ)`` with the defence's σ, then the normalisation undone and
    clipped to [0, 1]. Where W keeps fewer outputs than pixels it fills the dropped directions with their
    conditional mean instead of zero (``analytic``); at σ = 0 with a square, invertible W it is exact."""
    w, y = _linear_system(smashed, know, "lmmse")
    return _to_image(patch_prior(know).lmmse(w, y, know.sigma), smashed, know)


# ----------------------------------------------------------------------------------------------------------
# optimisation


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation: mean absolute difference of vertical and horizontal neighbours."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def _logit(x01: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    x = x01.clamp(eps, 1 - eps)
    return torch.log(x) - torch.log1p(-x)


def prior_penalty(know: ServerKnowledge) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x01 -> mean over patches of (x_p - μ)ᵀ Σ⁻¹ (x_p - μ) / (2P)``: the Gaussian patch prior's negative
    log-likelihood (up to a constant) per pixel, in normalised units, with the prior :func:`patch_prior` fits
    to the auxiliary images (Σ with the same ridge as the LMMSE gain)."""
    prior = patch_prior(know)
    p, n = _grid(know.model)[0], prior.cov.shape[0]
    cov = prior.cov + JITTER * torch.trace(prior.cov) / n * torch.eye(n, dtype=torch.float64)
    precision = torch.linalg.inv(cov).to(know.aux_images)
    mu = prior.mean.to(know.aux_images)

    def penalty(x01: torch.Tensor) -> torch.Tensor:
        z = to_patches(know.normalize(x01), p) - mu
        return ((z @ precision) * z).sum(-1).mean() / (2 * n)

    return penalty


@ATTACKS.register("optimisation")
def optimisation(smashed: torch.Tensor, know: ServerKnowledge) -> torch.Tensor:
    """argmin_x ||head(x) - z||² (mean over elements) + tv · TV(x) + prior · NLL(x) (:func:`prior_penalty`),
    x = sigmoid(u) in [0, 1], by Adam from the auxiliary mean image; the head's weights stay fixed."""
    s = know.settings
    target = smashed.detach()
    penalty = prior_penalty(know) if s.opt_prior > 0 else None
    start = know.aux_images.mean(0, keepdim=True).expand(len(target), -1, -1, -1)
    u = _logit(start).clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=s.opt_lr)
    params = [p for p in know.model.head.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        for _ in range(s.opt_steps):
            x = torch.sigmoid(u)
            loss = F.mse_loss(know.head(x), target) + s.opt_tv * total_variation(x)
            if penalty is not None:
                loss = loss + s.opt_prior * penalty(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return torch.sigmoid(u).detach()


# ----------------------------------------------------------------------------------------------------------
# learned decoder


class TokenDecoder(nn.Module):
    """Smashed patch tokens ``[B, N, D]`` -> image ``[B, 3, H, W]`` in [0, 1]: a per-token MLP to each patch's
    pixels, folded into the image, plus a residual 3×3 convolution across patch borders."""

    def __init__(self, dim: int, hidden: int, patch: int, grid: tuple[int, int], channels: int = 3) -> None:
        super().__init__()
        self.patch, self.grid, self.channels = patch, grid, channels
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, channels * patch * patch))
        self.refine = nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, channels, 3, padding=1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, (gh, gw), p, c = tokens.shape[0], self.grid, self.patch, self.channels
        x = self.mlp(tokens).reshape(b, gh, gw, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * p, gw * p)
        return torch.sigmoid(x + self.refine(x))


@torch.no_grad()
def _smash(know: ServerKnowledge, images: torch.Tensor, batch: int = 256) -> torch.Tensor:
    return torch.cat([know.head(images[i:i + batch]) for i in range(0, len(images), batch)])


@ATTACKS.register("decoder")
def decoder(smashed: torch.Tensor, know: ServerKnowledge) -> torch.Tensor:
    """Train a :class:`TokenDecoder` on (head(aux) + noise, aux) with MSE, then decode the received data."""
    s, model = know.settings, know.model
    p, gh, gw = _grid(model)
    gen = torch.Generator().manual_seed(s.seed)
    aux = know.aux_images
    aux_tokens = patch_tokens(_smash(know, aux), model)
    torch.manual_seed(s.seed)
    net = TokenDecoder(aux_tokens.shape[-1], s.decoder_hidden, p, (gh, gw), aux.shape[1]).to(aux.device)
    opt = torch.optim.Adam(net.parameters(), lr=s.decoder_lr)
    for _ in range(s.decoder_epochs):
        order = torch.randperm(len(aux), generator=gen).to(aux.device)
        for i in range(0, len(aux), s.batch_size):
            idx = order[i:i + s.batch_size]
            loss = F.mse_loss(net(add_noise(aux_tokens[idx], know.sigma, gen)), aux[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return net(patch_tokens(smashed, model))


@ATTACKS.register("mean_image")
def mean_image(smashed: torch.Tensor, know: ServerKnowledge) -> torch.Tensor:
    """The trivial baseline: the auxiliary data's mean image for every client image (ignores ``smashed``)."""
    return know.aux_images.mean(0, keepdim=True).expand(len(smashed), -1, -1, -1).clone()


def reconstruct(name: str, smashed: torch.Tensor, know: ServerKnowledge) -> torch.Tensor:
    """Run attack ``name`` (an unknown name raises with the valid list)."""
    return ATTACKS.get(name)(smashed, know)
